package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Roles a user may hold (profiles.role), as policies/access.json knows them.
var Roles = []string{"admin", "developer", "user"}

// Operator is the local operator's user administration (the `vectabase
// users` commands): making an admin when none can sign in, and changing a
// user's role. Each change is audited as local-operator; an audit row that
// cannot be written makes the call fail.
type Operator struct {
	db     *store.DB
	aud    Auditor
	argon2 Argon2Params
}

// NewOperator returns the user administration on db, hashing passwords
// with params and recording every change on aud.
func NewOperator(db *store.DB, aud Auditor, params Argon2Params) *Operator {
	return &Operator{db: db, aud: aud, argon2: params}
}

// CreateAdmin creates a user with the admin role and an argon2id hash of
// password. Errors: VALIDATION_FAILED for a malformed email or a password
// outside 8 to 128 characters; CONFLICT when the email is taken (an
// existing user is promoted with SetRole instead, which leaves its password
// alone).
func (o *Operator) CreateAdmin(ctx context.Context, email, password string) (store.User, error) {
	email = normalizeEmail(email)
	if !validEmail(email) || strings.ContainsRune(email, 0) {
		return store.User{}, vectabase.Errorf(vectabase.EVALIDATION, "email: must be a valid address")
	}
	if n := utf8.RuneCountInString(password); n < minPasswordLen || n > maxPasswordLen || !utf8.ValidString(password) {
		return store.User{}, vectabase.Errorf(vectabase.EVALIDATION, "password: must be %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	hash, err := HashPassword(password, o.argon2)
	if err != nil {
		return store.User{}, err
	}
	u, err := o.db.CreateUser(ctx, store.NewUser{Email: email, PasswordHash: hash, Role: "admin"})
	if errors.Is(err, store.ErrConflict) {
		return store.User{}, vectabase.Errorf(vectabase.ECONFLICT, "a user with email %s already exists: make it an admin with 'vectabase users set-role %s admin'", email, email)
	}
	if err != nil {
		return store.User{}, err
	}
	if err := o.audit(ctx, "user.create_admin", u.ID, map[string]any{"role": "admin"}); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// SetRole gives the user whose email is email the role role (admin,
// developer or user) and returns the user with the role it had before. It
// takes effect on the user's next request: access checks read the role
// from the database, not from the token. Errors: VALIDATION_FAILED for an
// unknown role; NOT_FOUND for an unknown email.
func (o *Operator) SetRole(ctx context.Context, email, role string) (store.User, string, error) {
	valid := false
	for _, r := range Roles {
		valid = valid || r == role
	}
	if !valid {
		return store.User{}, "", vectabase.Errorf(vectabase.EVALIDATION, "role: must be one of %s", strings.Join(Roles, ", "))
	}
	u, previous, err := o.db.SetRoleByEmail(ctx, strings.TrimSpace(email), role)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, "", vectabase.Errorf(vectabase.ENOTFOUND, "no user with email %s", strings.TrimSpace(email))
	}
	if err != nil {
		return store.User{}, "", err
	}
	if err := o.audit(ctx, "user.set_role", u.ID, map[string]any{"from": previous, "to": role}); err != nil {
		return store.User{}, "", err
	}
	return u, previous, nil
}

func (o *Operator) audit(ctx context.Context, action, userID string, details map[string]any) error {
	err := o.aud.Record(ctx, vectabase.AuditEvent{Time: time.Now(), ActorType: vectabase.ActorLocalOperator,
		Action: action, ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess, Details: details})
	if err != nil {
		return fmt.Errorf("%s: the change was made but its audit row could not be written: %w", action, err)
	}
	return nil
}
