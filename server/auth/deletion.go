package auth

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// RecentSignInWindow is how recent a sign-in must be for a user without a
// password (a Discord-only account) to delete the account: the proof that
// whoever holds the token is the account's owner now.
const RecentSignInWindow = 5 * time.Minute

// DeleteMe deletes the caller's account with crypto-shredding
// (store.DB.ShredUser): the personal key is destroyed, personal rows are
// deleted, the user's purchases stay in the sellers' sales with the buyer
// anonymised, and the id goes into the shredding ledger that every restore
// re-applies. A user with a password must give it; one without must have
// signed in within RecentSignInWindow in this session. Errors:
// VALIDATION_FAILED for a wrong or missing password (counted like failed
// logins; RATE_LIMITED after too many), FORBIDDEN for an admin (demote it
// first with `vectabase users set-role`) or a sign-in that is not recent.
// A seller's stores with sales stay, closed and anonymised, for the
// buyers' records; licenses buyers paid for stay with them.
func (s *Service) DeleteMe(ctx context.Context, userID, sessionID, password string, meta RequestMeta) error {
	u, err := s.db.UserByID(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "user no longer exists")
	}
	if err != nil {
		return err
	}
	if u.Role == "admin" {
		return vectabase.Errorf(vectabase.EFORBIDDEN, "an admin account cannot delete itself: make it a user first (vectabase users set-role)")
	}
	if u.PasswordHash != nil || password != "" {
		if err := s.checkPassword(ctx, u, password, "auth.account_delete", "password", meta); err != nil {
			return err
		}
	} else {
		at, err := s.db.SignedInAt(ctx, sessionID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err != nil || s.now().Sub(at) > RecentSignInWindow {
			return vectabase.Errorf(vectabase.EFORBIDDEN, "sign in again, then delete the account within %s", humanDuration(RecentSignInWindow))
		}
	}
	_, err = s.db.ShredUser(ctx, userID, s.now(), func(_ pgx.Tx, r store.ShredResult) error {
		// Audited before the deletion commits: a deletion that cannot be
		// audited does not happen. The row names the id only.
		return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
			Action: "auth.account_delete", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess,
			Details: map[string]any{"salesAnonymised": r.SalesAnonymised, "secretsDeleted": r.SecretsDeleted,
				"personalKeyDestroyed": r.KeyDestroyed, "storesClosed": r.StoresClosed}})
	})
	if err == nil {
		// This instance forgets the key now; another one within the
		// keyring's personal-key TTL.
		s.kr.ForgetPersonal(userID)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "user no longer exists")
	}
	return err
}

// checkPassword verifies password against u's, counting a wrong one
// against the account like a failed login and auditing it as action with
// result failure. field names the body field in the error.
func (s *Service) checkPassword(ctx context.Context, u store.User, password, action, field string, meta RequestMeta) error {
	now := s.now()
	fws := windowStart(now, s.cfg.FailureWindow)
	who := derefString(u.Email)
	if who == "" {
		who = "id:" + u.ID
	}
	acct := s.accountBucket(who)
	hits, err := s.db.ThrottleHit(ctx, []string{acct}, fws, 0)
	if err != nil {
		return err
	}
	if s.cfg.MaxFailuresPerAccount > 0 && hits[0].Hits >= s.cfg.MaxFailuresPerAccount {
		return rateLimited("too many wrong passwords; try again later", fws.Add(s.cfg.FailureWindow).Sub(now))
	}
	hash := s.dummy
	if u.PasswordHash != nil {
		hash = *u.PasswordHash
	}
	_, _, verr := s.verifyPassword(ctx, hash, password)
	if errors.Is(verr, errNoHashSlot) {
		return verr
	}
	if u.PasswordHash != nil && verr == nil {
		return nil
	}
	if _, err := s.db.ThrottleHit(ctx, []string{acct}, fws, 1); err != nil {
		return err
	}
	if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: u.ID,
		Action: action, ResourceType: "user", ResourceID: u.ID, Result: vectabase.ResultFailure,
		Details: map[string]any{"reason": "wrong_password"}}); err != nil {
		return err
	}
	return vectabase.Errorf(vectabase.EVALIDATION, "%s: wrong password", field)
}

// linkDiscord links du to the signed-in user userID (never by email).
// CONFLICT when du is linked to another account or userID to another
// Discord account.
func (s *Service) linkDiscord(ctx context.Context, userID string, du DiscordUser, meta RequestMeta) (store.User, error) {
	name := du.Username
	if len(name) > 100 {
		name = name[:100]
	}
	if other, err := s.db.UserByDiscordID(ctx, du.ID); err == nil && other.ID != userID {
		return store.User{}, s.linkRefused(ctx, userID, "linked_to_another_account", meta,
			vectabase.Errorf(vectabase.ECONFLICT, "this Discord account is linked to another account"))
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, err
	}
	u, err := s.db.SetDiscord(ctx, userID, du.ID, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.User{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "user no longer exists")
	case errors.Is(err, store.ErrConflict):
		return store.User{}, s.linkRefused(ctx, userID, "conflict", meta,
			vectabase.Errorf(vectabase.ECONFLICT, "the account is linked to another Discord account, or this one to another account: unlink first"))
	case err != nil:
		return store.User{}, err
	}
	if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.discord_link", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess}); err != nil {
		return store.User{}, err
	}
	u.PasswordHash = nil
	return u, nil
}

func (s *Service) linkRefused(ctx context.Context, userID, reason string, meta RequestMeta, refusal error) error {
	if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.discord_link", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultFailure,
		Details: map[string]any{"reason": reason}}); err != nil {
		return err
	}
	return refusal
}

// UnlinkDiscord removes the caller's Discord link. NOT_FOUND when none is
// linked; CONFLICT when the account has no password (it would be left
// with no way to sign in: set one through the password reset first).
func (s *Service) UnlinkDiscord(ctx context.Context, userID string, meta RequestMeta) error {
	_, err := s.db.UnsetDiscord(ctx, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return vectabase.Errorf(vectabase.ENOTFOUND, "no Discord account is linked")
	case errors.Is(err, store.ErrLastSignInMethod):
		return vectabase.Errorf(vectabase.ECONFLICT, "the account has no password: unlinking Discord would leave no way to sign in; set a password first")
	case err != nil:
		return err
	}
	return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.discord_unlink", ResourceType: "user", ResourceID: userID, Result: vectabase.ResultSuccess})
}

func (s *Service) handleDeleteMe(c *fiber.Ctx) error {
	var req struct {
		Password string `json:"password"`
	}
	if len(c.Body()) > 0 {
		if err := server.DecodeJSON(c, &req); err != nil {
			return err
		}
	}
	if err := s.DeleteMe(c.UserContext(), UserID(c), SessionID(c), strings.Clone(req.Password), meta(c)); err != nil {
		return withRetryAfter(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleDiscordLink(c *fiber.Ctx) error {
	u, cookie, err := s.DiscordLinkURL(UserID(c))
	if err != nil {
		return err
	}
	s.setStateCookie(c, cookie, stateCookieTTL)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(fiber.Map{"url": u})
}

func (s *Service) handleDiscordUnlink(c *fiber.Ctx) error {
	if err := s.UnlinkDiscord(c.UserContext(), UserID(c), meta(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
