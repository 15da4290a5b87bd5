package vectabase

import "time"

// Actor types of audit events.
const (
	ActorUser          = "user"
	ActorAPIKey        = "api_key"
	ActorLocalOperator = "local-operator"
	ActorAnonymous     = "anonymous"
	ActorSystem        = "system"
)

// Results of audit events.
const (
	ResultAllowed = "allowed" // an access the policy permitted
	ResultDenied  = "denied"  // an access the policy refused
	ResultSuccess = "success" // an operation that worked
	ResultFailure = "failure" // an operation that failed (failed login, bad key)
)

// AuditEvent is one row of the audit trail: who did what to which resource,
// from where, when, and how it ended. It never holds a secret value,
// password, token or API key: Details carries only metadata (versions,
// counts, reasons).
type AuditEvent struct {
	Time         time.Time // zero: now
	ActorType    string    // one of the Actor* constants
	ActorID      string    // user id, API key id, or empty
	Action       string    // e.g. secret.read, auth.login, keys.rotate_dek
	ResourceType string    // e.g. secret, session, keyset
	ResourceID   string
	Result       string // one of the Result* constants
	IP           string
	RequestID    string
	Details      map[string]any
}
