// Package vault is Vectabase's secrets vault: named secrets with versions,
// values encrypted by the keyring and bound to their name and version,
// check-and-set writes, and an access policy checked on every call.
//
// Every call, allowed or refused, is recorded in the audit trail, and a
// call whose audit row cannot be written fails with UNAVAILABLE and returns
// nothing (fail closed). Reads are recorded after the value is decrypted
// and before it is returned; writes and deletes are recorded before their
// transaction commits, so an unaudited change never becomes visible.
package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/audit"
)

// Config is the vault's configuration, filled from the environment in cmd/.
type Config struct {
	// MaxVersions is how many versions of each secret are kept; older ones
	// are deleted when a new one is written.
	MaxVersions int `env:"SECRETS_MAX_VERSIONS" envDefault:"10"`
}

// MaxValueBytes bounds a secret's value.
const MaxValueBytes = 256 << 10

// Caller is who is calling and from where, for the policy and the audit row.
type Caller struct {
	Type      string // a vectabase.Actor* constant
	ID        string // user id for users; empty for the local operator and system
	IP        string
	RequestID string
	// Role is a user's profiles.role when the caller's authentication
	// already read it for this request (RoleKnown); otherwise the vault
	// reads it. Either way it is the role as of this request.
	Role      string
	RoleKnown bool
	// Reason is why the caller asks (the console's reveal dialog), kept in
	// the audit row's details as "reason". Callers validate it first
	// (ValidReason): it is bounded, printable text.
	Reason string
}

// MaxReasonRunes bounds Caller.Reason.
const MaxReasonRunes = 200

// ValidReason checks an access reason: at most MaxReasonRunes characters
// of valid UTF-8 with no control characters. Errors: VALIDATION_FAILED.
func ValidReason(reason string) error {
	if !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReasonRunes {
		return vectabase.Errorf(vectabase.EVALIDATION, "reason: must be at most %d characters of text", MaxReasonRunes)
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			return vectabase.Errorf(vectabase.EVALIDATION, "reason: must not contain control characters")
		}
	}
	return nil
}

// LocalOperator is the CLI's caller.
var LocalOperator = Caller{Type: vectabase.ActorLocalOperator}

// System is the server itself, reading its own credentials.
var System = Caller{Type: vectabase.ActorSystem}

// Service is the secrets vault. It is safe for concurrent use.
type Service struct {
	db     *store.DB
	kr     *keyring.Keyring
	audit  audit.Recorder
	policy *policies.Access
	cfg    Config
	access *prometheus.CounterVec
	// alerter raises the alert of a honeytoken read (nil: none).
	alerter Alerter
}

// Alerter raises an alert without waiting for it (alerts.(*Service)).
type Alerter interface {
	Raise(a alerts.Alert)
}

// SetAlerter makes honeytoken reads raise alerts through a.
func (s *Service) SetAlerter(a Alerter) { s.alerter = a }

// New returns the vault over db, encrypting with kr, recording to rec and
// checking pol. reg (may be nil) gets vectabase_secret_access_total.
func New(db *store.DB, kr *keyring.Keyring, rec audit.Recorder, pol *policies.Access, cfg Config, reg prometheus.Registerer) *Service {
	if cfg.MaxVersions <= 0 {
		cfg.MaxVersions = 10
	}
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_secret_access_total",
		Help: "Secret vault calls by action (read, write, list, versions, delete) and result (allowed, denied, failure, audit_failed).",
	}, []string{"action", "result"})
	if reg != nil {
		if err := reg.Register(cv); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					cv = existing
				}
			}
		}
	}
	return &Service{db: db, kr: kr, audit: rec, policy: pol, cfg: cfg, access: cv}
}

// Metadata describes a secret without its value: the columns of secrets
// under camelCase names, with Version the current version.
type Metadata struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	OwnerID     *string   `json:"ownerId"`
	Version     int       `json:"version"`
	CreatedBy   string    `json:"createdBy"`
	UpdatedBy   string    `json:"updatedBy"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

func metadataOf(s store.Secret) Metadata {
	m := Metadata{ID: s.ID, Name: s.Name, Description: s.Description, Version: s.CurrentVersion,
		CreatedBy: s.CreatedBy, UpdatedBy: s.UpdatedBy, CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC()}
	if s.OwnerID != "" {
		owner := s.OwnerID
		m.OwnerID = &owner
	}
	return m
}

// Value is one version of a secret with its plaintext. String and GoString
// redact the value, so it cannot reach a log by accident.
type Value struct {
	Name      string
	Version   int
	Value     []byte
	UpdatedAt time.Time // when this version was written
	// honeytoken: reading it raised an alert (never shown to the caller).
	honeytoken bool
}

func (v Value) String() string   { return "vault.Value{" + v.Name + " [redacted]}" }
func (v Value) GoString() string { return v.String() }

// Version describes one stored version of a secret.
type Version struct {
	Version   int       `json:"version"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
}

// ListPage is one page of List: metadata, never values.
type ListPage struct {
	Items      []Metadata `json:"items"`
	NextCursor *string    `json:"nextCursor"`
}

// Audit actions, also the action label of vectabase_secret_access_total
// (without the "secret." prefix).
const (
	ActionRead     = "secret.read"
	ActionWrite    = "secret.write"
	ActionList     = "secret.list"
	ActionVersions = "secret.versions"
	ActionDelete   = "secret.delete"
	// ActionHoneytoken marks or unmarks a secret as a honeytoken.
	ActionHoneytoken = "secret.honeytoken"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-/]{0,254}$`)

// ValidName checks a secret name: 1 to 255 letters, digits, '.', '_', '-'
// and '/', starting with a letter or digit, with no empty, "." or ".."
// path segment. Its message never repeats the name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return vectabase.Errorf(vectabase.EVALIDATION, "name: must be 1 to 255 letters, digits, '.', '_', '-' or '/', starting with a letter or digit")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return vectabase.Errorf(vectabase.EVALIDATION, "name: must not have empty, '.' or '..' segments")
		}
	}
	return nil
}

// role resolves the caller's policy role: profiles.role for users, the
// caller type for the local operator and the server, nothing otherwise.
func (s *Service) role(ctx context.Context, c Caller) (string, error) {
	switch c.Type {
	case vectabase.ActorUser:
		if c.RoleKnown {
			return c.Role, nil
		}
		role, err := s.db.UserRole(ctx, c.ID)
		if errors.Is(err, store.ErrNotFound) {
			return "", nil
		}
		return role, err
	case vectabase.ActorLocalOperator, vectabase.ActorSystem:
		return c.Type, nil
	}
	return "", nil
}

func (s *Service) allowed(role string, c Caller, name string, cap policies.Capability) bool {
	uid := ""
	if c.Type == vectabase.ActorUser {
		uid = c.ID
	}
	return s.policy.Allowed(role, uid, name, cap)
}

func actorString(c Caller) string {
	if c.ID == "" {
		return c.Type
	}
	return c.Type + ":" + c.ID
}

func forbidden() error {
	return vectabase.Errorf(vectabase.EFORBIDDEN, "the access policy does not allow this")
}

func notFound() error { return vectabase.Errorf(vectabase.ENOTFOUND, "secret not found") }

// resultOf is the audit result of a call that ended with err.
func resultOf(err error) string {
	switch {
	case err == nil:
		return vectabase.ResultAllowed
	case vectabase.ErrorCode(err) == vectabase.EFORBIDDEN, vectabase.ErrorCode(err) == vectabase.EUNAUTHORIZED:
		return vectabase.ResultDenied
	}
	return vectabase.ResultFailure
}

// record writes the audit row of a call that ended with opErr and returns
// the error the caller gets: opErr, or UNAVAILABLE when the row could not
// be written, whatever opErr was.
func (s *Service) record(ctx context.Context, c Caller, action, name string, details map[string]any, opErr error) error {
	result := resultOf(opErr)
	if c.Reason != "" {
		if details == nil {
			details = map[string]any{}
		}
		details["reason"] = c.Reason
	}
	if opErr != nil {
		if details == nil {
			details = map[string]any{}
		}
		details["error"] = vectabase.ErrorCode(opErr)
	}
	resType := "secret"
	if action == ActionList {
		resType = "secrets"
	}
	err := s.audit.Record(ctx, vectabase.AuditEvent{
		ActorType: c.Type, ActorID: c.ID, Action: action, ResourceType: resType, ResourceID: name,
		Result: result, IP: c.IP, RequestID: c.RequestID, Details: details,
	})
	label := strings.TrimPrefix(action, "secret.")
	if err != nil {
		s.access.WithLabelValues(label, "audit_failed").Inc()
		return vectabase.WrapError(vectabase.EUNAVAILABLE, "the audit trail cannot be written, so the request was refused", err)
	}
	s.access.WithLabelValues(label, result).Inc()
	return opErr
}

// Refused audits a call that failed before it reached the service: a
// request without valid credentials, or one that could not be decoded. It
// returns what the caller gets: err, or UNAVAILABLE when even the refusal
// cannot be audited.
func (s *Service) Refused(ctx context.Context, c Caller, action, name string, err error) error {
	return s.record(ctx, c, action, name, nil, err)
}

// Get returns version (0: the current one) of the secret called name.
// Errors: VALIDATION_FAILED for a bad name or version, FORBIDDEN without
// read on name, NOT_FOUND, UNAVAILABLE when the read cannot be audited (no
// value is returned then).
func (s *Service) Get(ctx context.Context, c Caller, name string, version int) (Value, error) {
	v, err := s.get(ctx, c, name, version)
	details := map[string]any{}
	if err == nil {
		details["version"] = v.Version
	}
	if err := s.record(ctx, c, ActionRead, name, details, err); err != nil {
		return Value{}, err
	}
	if v.honeytoken {
		// A tripwire: the caller gets the (decoy) value like any other
		// read, and the alert goes out without slowing the answer.
		s.raiseHoneytoken(c, name)
	}
	return v, nil
}

func (s *Service) raiseHoneytoken(c Caller, name string) {
	if s.alerter == nil {
		return
	}
	s.alerter.Raise(alerts.Alert{
		Key:  "honeytoken_read:" + name + ":" + uuid.NewString(),
		Kind: alerts.KindHoneytokenRead,
		Message: fmt.Sprintf("honeytoken secret %q was read by %s (ip %q, request %q)",
			audit.Clip(name), actorString(c), c.IP, c.RequestID),
		ResourceType: "secret", ResourceID: name,
	})
}

// SetHoneytoken marks the secret called name as a honeytoken (on) or
// clears the mark. Reading a honeytoken works like any read, returning its
// stored (decoy) value, and raises an alert. Only an admin or the local
// operator may set it; the change is audited before it commits. Errors:
// VALIDATION_FAILED, FORBIDDEN, NOT_FOUND, UNAVAILABLE.
func (s *Service) SetHoneytoken(ctx context.Context, c Caller, name string, on bool) error {
	recorded := false
	details := map[string]any{"honeytoken": on}
	err := func() error {
		if err := ValidName(name); err != nil {
			return err
		}
		role, err := s.role(ctx, c)
		if err != nil {
			return err
		}
		if role != "admin" && role != vectabase.ActorLocalOperator {
			return forbidden()
		}
		return s.db.InTx(ctx, func(tx pgx.Tx) error {
			if err := store.SetHoneytoken(ctx, tx, name, on); errors.Is(err, store.ErrNotFound) {
				return notFound()
			} else if err != nil {
				return err
			}
			recorded = true
			return s.record(ctx, c, ActionHoneytoken, name, details, nil)
		})
	}()
	if !recorded {
		err = s.record(ctx, c, ActionHoneytoken, name, details, err)
	}
	return err
}

func (s *Service) get(ctx context.Context, c Caller, name string, version int) (Value, error) {
	if err := ValidName(name); err != nil {
		return Value{}, err
	}
	if version < 0 || version > math.MaxInt32 {
		return Value{}, vectabase.Errorf(vectabase.EVALIDATION, "version: must be a positive integer")
	}
	role, err := s.role(ctx, c)
	if err != nil {
		return Value{}, err
	}
	if !s.allowed(role, c, name, policies.CapRead) {
		return Value{}, forbidden()
	}
	sv, err := s.db.ReadSecret(ctx, s.kr, name, version)
	if errors.Is(err, store.ErrNotFound) {
		return Value{}, notFound()
	}
	if err != nil {
		return Value{}, err
	}
	return Value{Name: sv.Secret.Name, Version: sv.Version, Value: sv.Value, UpdatedAt: sv.CreatedAt.UTC(), honeytoken: sv.Honeytoken}, nil
}

// Put writes value as a new version of the secret called name, creating
// the secret when it does not exist. With expectedVersion set, the write
// happens only when the current version equals it (0: the secret must not
// exist yet); otherwise it is CONFLICT. Creating needs the create
// capability, writing over an existing secret update. The newest
// MaxVersions versions are kept.
func (s *Service) Put(ctx context.Context, c Caller, name string, value []byte, expectedVersion *int) (Metadata, error) {
	var (
		out      Metadata
		recorded bool
	)
	err := s.put(ctx, c, name, value, expectedVersion, func(tx pgx.Tx, sec store.Secret, created bool) error {
		recorded = true
		out = metadataOf(sec)
		return s.record(ctx, c, ActionWrite, name, map[string]any{"version": sec.CurrentVersion, "created": created}, nil)
	})
	if !recorded {
		err = s.record(ctx, c, ActionWrite, name, nil, err)
	}
	if err != nil {
		return Metadata{}, err
	}
	return out, nil
}

func (s *Service) put(ctx context.Context, c Caller, name string, value []byte, expected *int,
	commit func(pgx.Tx, store.Secret, bool) error) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if len(value) > MaxValueBytes {
		return vectabase.Errorf(vectabase.EVALIDATION, "value: must be at most %d bytes", MaxValueBytes)
	}
	if expected != nil && (*expected < 0 || *expected > math.MaxInt32) {
		return vectabase.Errorf(vectabase.EVALIDATION, "expectedVersion: must be 0 or more")
	}
	role, err := s.role(ctx, c)
	if err != nil {
		return err
	}
	mayCreate := s.allowed(role, c, name, policies.CapCreate)
	mayUpdate := s.allowed(role, c, name, policies.CapUpdate)
	if !mayCreate && !mayUpdate {
		return forbidden()
	}
	// A user owns only what they write in their own namespace; a secret
	// written elsewhere is the platform's, so deleting the account of the
	// admin who stored it does not take it along.
	owner := ""
	if c.Type == vectabase.ActorUser && s.policy.Personal(c.ID, name) {
		owner = c.ID
	}
	return s.db.InTx(ctx, func(tx pgx.Tx) error {
		sec, err := store.LockSecretForWrite(ctx, tx, name, actorString(c), owner)
		if err != nil {
			return err
		}
		created := sec.CurrentVersion == 0
		if (created && !mayCreate) || (!created && !mayUpdate) {
			return forbidden()
		}
		if expected != nil && *expected != sec.CurrentVersion {
			return vectabase.Errorf(vectabase.ECONFLICT, "expectedVersion is %d but the current version is %d", *expected, sec.CurrentVersion)
		}
		sec, err = store.WriteSecretVersion(ctx, tx, s.kr, sec, value, actorString(c), s.cfg.MaxVersions)
		if err != nil {
			return err
		}
		return commit(tx, sec, created)
	})
}

// Delete removes the secret called name with all its versions. Errors:
// VALIDATION_FAILED, FORBIDDEN without delete on name, NOT_FOUND,
// UNAVAILABLE when the deletion cannot be audited (nothing is deleted then).
func (s *Service) Delete(ctx context.Context, c Caller, name string) error {
	recorded := false
	err := func() error {
		if err := ValidName(name); err != nil {
			return err
		}
		role, err := s.role(ctx, c)
		if err != nil {
			return err
		}
		if !s.allowed(role, c, name, policies.CapDelete) {
			return forbidden()
		}
		return s.db.InTx(ctx, func(tx pgx.Tx) error {
			sec, err := store.LockSecret(ctx, tx, name)
			if errors.Is(err, store.ErrNotFound) {
				return notFound()
			}
			if err != nil {
				return err
			}
			if err := store.DeleteSecret(ctx, tx, sec.ID); err != nil {
				return err
			}
			recorded = true
			return s.record(ctx, c, ActionDelete, name, map[string]any{"version": sec.CurrentVersion}, nil)
		})
	}()
	if !recorded {
		err = s.record(ctx, c, ActionDelete, name, nil, err)
	}
	return err
}

// Versions lists the stored versions of the secret called name, newest
// first. It needs read on name.
func (s *Service) Versions(ctx context.Context, c Caller, name string) ([]Version, error) {
	vs, err := func() ([]Version, error) {
		if err := ValidName(name); err != nil {
			return nil, err
		}
		role, err := s.role(ctx, c)
		if err != nil {
			return nil, err
		}
		if !s.allowed(role, c, name, policies.CapRead) {
			return nil, forbidden()
		}
		sec, err := s.db.FindSecret(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound()
		}
		if err != nil {
			return nil, err
		}
		svs, err := s.db.ListSecretVersions(ctx, sec.ID)
		if err != nil {
			return nil, err
		}
		out := make([]Version, len(svs))
		for i, v := range svs {
			out[i] = Version{Version: v.Version, CreatedBy: v.CreatedBy, CreatedAt: v.CreatedAt.UTC()}
		}
		return out, nil
	}()
	if err := s.record(ctx, c, ActionVersions, name, map[string]any{"count": len(vs)}, err); err != nil {
		return nil, err
	}
	return vs, nil
}

const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// List returns the secrets the caller may list, by name, limit at a time
// (0: 100; at most 1000), continuing after cursor. It never returns values.
// A caller whose role may list nothing at all gets FORBIDDEN.
func (s *Service) List(ctx context.Context, c Caller, limit int, cursor string) (ListPage, error) {
	page, err := s.list(ctx, c, limit, cursor)
	if err := s.record(ctx, c, ActionList, "", map[string]any{"count": len(page.Items)}, err); err != nil {
		return ListPage{}, err
	}
	return page, nil
}

func (s *Service) list(ctx context.Context, c Caller, limit int, cursor string) (ListPage, error) {
	switch {
	case limit == 0:
		limit = defaultListLimit
	case limit < 0 || limit > maxListLimit:
		return ListPage{}, vectabase.Errorf(vectabase.EVALIDATION, "limit: must be between 1 and %d", maxListLimit)
	}
	after := ""
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || ValidName(string(b)) != nil {
			return ListPage{}, vectabase.Errorf(vectabase.EVALIDATION, "cursor: not a cursor from a previous page")
		}
		after = string(b)
	}
	role, err := s.role(ctx, c)
	if err != nil {
		return ListPage{}, err
	}
	if !s.policy.Any(role, policies.CapList) {
		return ListPage{}, forbidden()
	}
	page := ListPage{Items: []Metadata{}}
	// Fetch in chunks, keeping what the policy lets the caller see, until the
	// page is full (one extra tells whether there is a next page).
	for {
		secs, err := s.db.ListSecrets(ctx, after, max(limit, 100))
		if err != nil {
			return ListPage{}, err
		}
		for _, sec := range secs {
			after = sec.Name
			if !s.allowed(role, c, sec.Name, policies.CapList) {
				continue
			}
			if len(page.Items) == limit {
				next := base64.RawURLEncoding.EncodeToString([]byte(page.Items[limit-1].Name))
				page.NextCursor = &next
				return page, nil
			}
			page.Items = append(page.Items, metadataOf(sec))
		}
		if len(secs) < max(limit, 100) {
			return page, nil
		}
	}
}

// Credential returns envValue when it is set (the environment wins), and
// otherwise the current value of the secret called name, read as the
// system caller and audited like any read. A missing secret gives "" and
// no error, so an optional credential may be absent.
func (s *Service) Credential(ctx context.Context, envValue, name string) (string, error) {
	if envValue != "" {
		return envValue, nil
	}
	v, err := s.Get(ctx, System, name, 0)
	if vectabase.ErrorCode(err) == vectabase.ENOTFOUND {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(v.Value), nil
}
