package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/mail"
	"github.com/vectabase/vectabase/store"
)

// Accounts people run themselves: password reset, email confirmation and
// change, profile and password changes, and their own sessions.
//
// A link's token is never stored. Its string is base64url(id || tag): id is
// the auth_tokens row (a random UUID) and tag the keyring's MAC of the
// token's kind and id, cut to 128 bits. Only the keyring can make a tag, so
// the database alone (a dump, a backup, a reader of mail_outbox) yields no
// usable link; the row says what the token is for, whether it was used and
// when it expires, and spending it is one UPDATE … WHERE used_at IS NULL.

const tokenTagLen = 16

func (s *Service) tokenString(kind, id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", err
	}
	tag, err := s.kr.MAC("auth_token", []byte(kind+"\x00"+id))
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(append(u[:], tag[:tokenTagLen]...)), nil
}

// parseToken returns the row id of tok if its tag is right for one of
// kinds; ok is false for anything else.
func (s *Service) parseToken(tok string, kinds ...string) (id string, ok bool) {
	if len(tok) > 64 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != 16+tokenTagLen {
		return "", false
	}
	u, _ := uuid.FromBytes(raw[:16])
	id = u.String()
	for _, k := range kinds {
		tag, err := s.kr.MAC("auth_token", []byte(k+"\x00"+id))
		if err == nil && subtle.ConstantTimeCompare(tag[:tokenTagLen], raw[16:]) == 1 {
			return id, true
		}
	}
	return "", false
}

var errBadMailToken = vectabase.Errorf(vectabase.EVALIDATION, "token: invalid, already used or expired")

func validPassword(password string) error {
	if n := utf8.RuneCountInString(password); n < minPasswordLen || n > maxPasswordLen || !utf8.ValidString(password) {
		return vectabase.Errorf(vectabase.EVALIDATION, "password: must be %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	return nil
}

// ForgotPassword queues a reset mail for email. It does the same work
// whether or not the address has an account (count the request, queue a
// mail; the mail worker finds out, and sends nothing for an unknown
// address), so neither its answer nor its time tells them apart. Errors:
// VALIDATION_FAILED for a malformed address, RATE_LIMITED past the per-IP
// attempts or the per-address resets (AUTH_MAX_RESETS_PER_EMAIL in
// AUTH_RESET_WINDOW).
func (s *Service) ForgotPassword(ctx context.Context, email string, meta RequestMeta) error {
	email = normalizeEmail(email)
	if !validEmail(email) || strings.ContainsRune(email, 0) {
		return vectabase.Errorf(vectabase.EVALIDATION, "email: must be a valid address")
	}
	now := s.now()
	aws, rws := windowStart(now, s.cfg.AttemptWindow), windowStart(now, s.cfg.ResetWindow)
	hits, err := s.db.ThrottleAdd(ctx, []store.ThrottleInc{
		{Bucket: attemptBucket("forgot", meta), Inc: 1, WindowStart: aws},
		{Bucket: s.resetBucket(email), Inc: 1, WindowStart: rws},
	})
	if err != nil {
		return err
	}
	if err := s.attemptsExceeded("forgot", hits[0].Hits, aws, now); err != nil {
		return err
	}
	if s.cfg.MaxResetsPerEmail > 0 && hits[1].Hits > s.cfg.MaxResetsPerEmail {
		s.metrics.rejected.WithLabelValues("forgot_email").Inc()
		return rateLimited("too many reset requests for this address; try again later", rws.Add(s.cfg.ResetWindow).Sub(now))
	}
	return s.db.EnqueueMail(ctx, store.NewMail{To: email, Template: mail.TemplatePasswordReset,
		Data: map[string]any{"email": email, "ip": meta.IP, "requestId": meta.RequestID}})
}

// resetBucket names the reset counter of an address by a keyed hash, like
// accountBucket.
func (s *Service) resetBucket(email string) string {
	b := s.accountBucket(email)
	return "reset:" + strings.TrimPrefix(b, "fail:")
}

// ResetPassword sets a new password with a reset token and ends every
// session of the user. The token works once, within AUTH_RESET_TTL; using
// it also confirms the email (the mail reached its owner). Errors:
// VALIDATION_FAILED for a bad password or an unusable token.
func (s *Service) ResetPassword(ctx context.Context, token, password string, meta RequestMeta) error {
	if err := validPassword(password); err != nil {
		return err
	}
	id, ok := s.parseToken(token, store.TokenPasswordReset)
	if !ok {
		return errBadMailToken
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return err
	}
	var userID string
	var revoked int64
	err = s.db.UseAuthToken(ctx, id, []string{store.TokenPasswordReset}, s.now(), func(tx pgx.Tx, t store.AuthToken) error {
		userID = t.UserID
		if err := store.SetPassword(ctx, tx, t.UserID, hash); err != nil {
			return err
		}
		if err := store.ConfirmEmail(ctx, tx, t.UserID); err != nil {
			return err
		}
		revoked, err = store.RevokeUserSessionsTx(ctx, tx, t.UserID, "", "password_reset")
		return err
	})
	if errors.Is(err, store.ErrTokenUnusable) {
		return errBadMailToken
	}
	if err != nil {
		return err
	}
	return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.password_reset", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess,
		Details: map[string]any{"sessionsRevoked": revoked}})
}

// ConfirmEmail spends a confirmation token: the registration's (the email
// is confirmed) or an email change's (the account moves to the new
// address, which is confirmed by this). Errors: VALIDATION_FAILED for an
// unusable token, CONFLICT when the new address was taken meanwhile.
func (s *Service) ConfirmEmail(ctx context.Context, token string, meta RequestMeta) error {
	id, ok := s.parseToken(token, store.TokenEmailConfirm, store.TokenEmailChange)
	if !ok {
		return errBadMailToken
	}
	var t store.AuthToken
	err := s.db.UseAuthToken(ctx, id, []string{store.TokenEmailConfirm, store.TokenEmailChange}, s.now(), func(tx pgx.Tx, tok store.AuthToken) error {
		t = tok
		if tok.Kind == store.TokenEmailChange && tok.NewEmail != nil {
			return store.ChangeEmail(ctx, tx, tok.UserID, *tok.NewEmail)
		}
		return store.ConfirmEmail(ctx, tx, tok.UserID)
	})
	switch {
	case errors.Is(err, store.ErrTokenUnusable):
		return errBadMailToken
	case errors.Is(err, store.ErrConflict):
		return vectabase.Errorf(vectabase.ECONFLICT, "email: already registered")
	case err != nil:
		return err
	}
	action := "auth.email_confirm"
	if t.Kind == store.TokenEmailChange {
		action = "auth.email_change"
	}
	return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: t.UserID,
		Action: action, ResourceType: "user", ResourceID: t.UserID, Result: vectabase.ResultSuccess})
}

// ProfileChange is PATCH /api/auth/me: nil fields stay as they are; an
// empty AvatarURL clears it. Email starts an email change (confirmed on the
// new address, notified on the old).
type ProfileChange struct {
	Username  *string `json:"username"`
	AvatarURL *string `json:"avatarUrl"`
	Email     *string `json:"email"`
}

var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,32}$`)

func validAvatarURL(raw string) bool {
	if raw == "" {
		return true
	}
	if len(raw) > 2048 {
		return false
	}
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.Opaque == "" &&
		!strings.ContainsAny(raw, " \t\r\n\"'<>\\")
}

// UpdateMe changes the caller's profile. Errors: VALIDATION_FAILED for a
// username outside [A-Za-z0-9_.-]{3,32}, an avatar URL that is not an https
// URL, or a malformed email; CONFLICT for a taken username or email.
func (s *Service) UpdateMe(ctx context.Context, userID string, ch ProfileChange, meta RequestMeta) (Me, error) {
	if ch.Username != nil && !usernamePattern.MatchString(*ch.Username) {
		return Me{}, vectabase.Errorf(vectabase.EVALIDATION, "username: 3 to 32 letters, digits, '_', '.' or '-'")
	}
	if ch.AvatarURL != nil && !validAvatarURL(*ch.AvatarURL) {
		return Me{}, vectabase.Errorf(vectabase.EVALIDATION, "avatarUrl: must be an https URL")
	}
	var newEmail string
	if ch.Email != nil {
		newEmail = normalizeEmail(*ch.Email)
		if !validEmail(newEmail) || strings.ContainsRune(newEmail, 0) {
			return Me{}, vectabase.Errorf(vectabase.EVALIDATION, "email: must be a valid address")
		}
	}
	changed := []string{}
	if ch.Username != nil || ch.AvatarURL != nil {
		upd := store.ProfileUpdate{Username: ch.Username, AvatarURL: ch.AvatarURL}
		if ch.AvatarURL != nil && *ch.AvatarURL == "" {
			upd.AvatarURL = new(string)
		}
		_, err := s.db.UpdateProfile(ctx, userID, upd)
		if errors.Is(err, store.ErrConflict) {
			return Me{}, vectabase.Errorf(vectabase.ECONFLICT, "username: already taken")
		}
		if errors.Is(err, store.ErrNotFound) {
			return Me{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "user no longer exists")
		}
		if err != nil {
			return Me{}, err
		}
		if ch.Username != nil {
			changed = append(changed, "username")
		}
		if ch.AvatarURL != nil {
			changed = append(changed, "avatarUrl")
		}
	}
	if newEmail != "" {
		if err := s.startEmailChange(ctx, userID, newEmail); err != nil {
			return Me{}, err
		}
		changed = append(changed, "email_change_requested")
	}
	if len(changed) > 0 {
		if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
			Action: "auth.profile_update", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess,
			Details: map[string]any{"fields": changed}}); err != nil {
			return Me{}, err
		}
	}
	return s.Me(ctx, userID)
}

// startEmailChange queues the confirmation to the new address and the
// notice to the old one, with the token, in one transaction.
func (s *Service) startEmailChange(ctx context.Context, userID, newEmail string) error {
	if _, err := s.db.UserByEmail(ctx, newEmail); err == nil {
		return vectabase.Errorf(vectabase.ECONFLICT, "email: already registered")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return s.db.InTx(ctx, func(tx pgx.Tx) error {
		u, err := store.UserByIDTx(ctx, tx, userID)
		if err != nil {
			return err
		}
		id, err := store.CreateAuthToken(ctx, tx, userID, store.TokenEmailChange, newEmail, s.now().Add(s.cfg.ConfirmTTL))
		if err != nil {
			return err
		}
		if err := store.EnqueueMail(ctx, tx, store.NewMail{To: newEmail, Template: mail.TemplateEmailChange,
			Data: map[string]any{"email": newEmail, "tokenId": id}}); err != nil {
			return err
		}
		if u.Email == nil {
			return nil
		}
		return store.EnqueueMail(ctx, tx, store.NewMail{To: *u.Email, Template: mail.TemplateEmailChangeNotice,
			Data: map[string]any{"email": *u.Email, "newEmail": newEmail}})
	})
}

// ChangePassword replaces the caller's password after checking the
// current one, and ends every other session of the user. Wrong current
// passwords count against the account like failed logins. Errors:
// VALIDATION_FAILED for a new password outside the rules or a wrong
// current one, RATE_LIMITED after too many wrong ones.
func (s *Service) ChangePassword(ctx context.Context, userID, sessionID, current, next string, meta RequestMeta) error {
	if err := validPassword(next); err != nil {
		return err
	}
	u, err := s.db.UserByID(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "user no longer exists")
	}
	if err != nil {
		return err
	}
	if err := s.checkPassword(ctx, u, current, "auth.password_change", "current", meta); err != nil {
		return err
	}
	newHash, err := s.hashPassword(ctx, next)
	if err != nil {
		return err
	}
	keep := ""
	if sess, err := s.db.SessionByID(ctx, sessionID); err == nil {
		keep = sess.FamilyID
	}
	var revoked int64
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if err := store.SetPassword(ctx, tx, userID, newHash); err != nil {
			return err
		}
		if revoked, err = store.RevokeUserSessionsTx(ctx, tx, userID, keep, "password_change"); err != nil {
			return err
		}
		if u.Email == nil {
			return nil
		}
		return store.EnqueueMail(ctx, tx, store.NewMail{To: *u.Email, Template: mail.TemplatePasswordChanged,
			Data: map[string]any{"email": *u.Email}})
	})
	if err != nil {
		return err
	}
	return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.password_change", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess,
		Details: map[string]any{"sessionsRevoked": revoked}})
}

// Sessions lists the caller's active sign-ins (refresh chains).
func (s *Service) Sessions(ctx context.Context, userID, sessionID string) ([]store.SignedInSession, error) {
	return s.db.ActiveSessions(ctx, userID, sessionID)
}

// RevokeSession ends one of the caller's sign-ins by its id (as Sessions
// lists it). NOT_FOUND when the caller has no such active session.
func (s *Service) RevokeSession(ctx context.Context, userID, id string, meta RequestMeta) error {
	n, err := s.db.RevokeFamily(ctx, userID, id, "revoked_by_user")
	if err != nil {
		return err
	}
	if n == 0 {
		return vectabase.Errorf(vectabase.ENOTFOUND, "session not found")
	}
	return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.session_revoke", ResourceType: "session", ResourceID: id, Result: vectabase.ResultSuccess,
		Details: map[string]any{"revoked": n}})
}

// PrepareMail renders an outbox mail for the mail worker, inside the
// worker's transaction. A reset mail finds its user now (nothing is sent
// for an address without an account) and mints its token on the first
// attempt, keeping the token's id in the mail for retries.
func (s *Service) PrepareMail(ctx context.Context, tx pgx.Tx, m store.OutboxMail) (mail.Message, bool, error) {
	str := func(k string) string { v, _ := m.Data[k].(string); return v }
	data := map[string]any{"Email": str("email"), "NewEmail": str("newEmail")}
	var link string
	switch m.Template {
	case mail.TemplatePasswordReset:
		u, err := store.UserByEmailTx(ctx, tx, str("email"))
		if errors.Is(err, store.ErrNotFound) {
			return mail.Message{}, false, nil
		}
		if err != nil {
			return mail.Message{}, false, err
		}
		id := str("tokenId")
		if id == "" {
			if id, err = store.CreateAuthToken(ctx, tx, u.ID, store.TokenPasswordReset, "", s.now().Add(s.cfg.ResetTTL)); err != nil {
				return mail.Message{}, false, err
			}
			m.Data["tokenId"] = id
			if err := store.SetMailData(ctx, tx, m.ID, m.Data); err != nil {
				return mail.Message{}, false, err
			}
			// The reset request is audited when it reaches an account, once.
			if err := s.audit(ctx, RequestMeta{IP: str("ip"), RequestID: str("requestId")}, vectabase.AuditEvent{
				ActorType: vectabase.ActorAnonymous, Action: "auth.password_reset_requested",
				ResourceType: "user", ResourceID: u.ID, Result: vectabase.ResultSuccess}); err != nil {
				return mail.Message{}, false, err
			}
		}
		tok, err := s.tokenString(store.TokenPasswordReset, id)
		if err != nil {
			return mail.Message{}, false, err
		}
		link = s.mailCfg.Link("/reset-password", "token", tok)
		data["ValidFor"] = humanDuration(s.cfg.ResetTTL)
	case mail.TemplateEmailConfirm, mail.TemplateEmailChange:
		kind := store.TokenEmailConfirm
		if m.Template == mail.TemplateEmailChange {
			kind = store.TokenEmailChange
		}
		tok, err := s.tokenString(kind, str("tokenId"))
		if err != nil {
			return mail.Message{}, false, fmt.Errorf("mail %s without a token: %w", m.ID, err)
		}
		link = s.mailCfg.Link("/confirm-email", "token", tok)
		data["ValidFor"] = humanDuration(s.cfg.ConfirmTTL)
	}
	data["Link"] = link
	msg, err := s.templates.Render(m.Template, m.To, data)
	msg.Link = link
	return msg, err == nil, err
}

// humanDuration writes d as "1 hour", "24 hours", "30 minutes".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int64(d/time.Minute), "minute")
	}
	return d.String()
}
