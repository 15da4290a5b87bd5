package discord

import (
	"context"
	"errors"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// grantOrRollBack gives the roles a committed command owes (ch.Grants),
// each with retries inside the role budget. When Discord does not give one,
// the command's change is taken back in a transaction of its own, the
// rollback audited, and the caller told: a member never ends with a
// recorded purchase they were told failed, nor a role without the record.
func (s *Service) grantOrRollBack(ctx context.Context, c *call, userID string, ch store.Change, action string) error {
	var ids []string
	var failed *store.RoleGrant
	for i, g := range ch.Grants {
		ids = append(ids, g.ID)
		if failed == nil && !s.applyGrant(ctx, c.rest, g).ok {
			failed = &ch.Grants[i]
		}
	}
	if failed == nil {
		return nil
	}
	// Roles already given by this command are taken back with the rows.
	for _, g := range ch.Grants {
		if g.ID == failed.ID {
			break
		}
		s.undoRole(c, g)
	}
	ev := c.event(action, vectabase.ResultFailure, map[string]any{"reason": "role_not_granted", "target_discord_id": userID})
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.budget.Role)
	defer cancel()
	if ch.Repeated {
		// Nothing new was recorded: only the grants are closed.
		if err := s.repo.RollbackGrants(rctx, store.Undo{}, ids, userID, func(ctx context.Context) error { return s.audit.Record(ctx, ev) }); err != nil {
			return err
		}
	} else if err := s.repo.RollbackGrants(rctx, ch.Undo, ids, userID, func(ctx context.Context) error { return s.audit.Record(ctx, ev) }); err != nil {
		return err
	}
	return &replyError{outcome: outcomeUnavailable, msg: roleRefusal}
}

const roleRefusal = "Discord did not give the role (check the bot's role is above the product role and the member is in this server); nothing was changed. Try again later."

// grantResult is how applyGrant ended: whether Discord confirmed, the
// attempts so far, and the interaction owed a report when the grant
// finished while its token was still valid (nil otherwise).
type grantResult struct {
	ok       bool
	attempts int
	status   int
	owed     *store.GrantInteraction
}

// applyGrant makes the role change g with retries within the role budget
// and records the outcome: done, or still pending (the worker retries it,
// or the caller rolls it back).
func (s *Service) applyGrant(ctx context.Context, rest *RESTClient, g store.RoleGrant) grantResult {
	gctx, cancel := context.WithTimeout(ctx, s.budget.Role)
	var err error
	var attempts int
	if g.Action == store.GrantRemove {
		attempts, err = rest.RemoveRole(gctx, g.GuildID, g.DiscordUserID, g.RoleID)
	} else {
		attempts, err = rest.AddRole(gctx, g.GuildID, g.DiscordUserID, g.RoleID)
	}
	cancel()
	state, status := store.GrantDone, 0
	if err != nil {
		state = store.GrantPending
		var re *RESTError
		if errors.As(err, &re) {
			status = re.Status
		}
		s.log.Warn().Str("grant", g.ID).Str("error", err.Error()).Msg("discord: role change not confirmed")
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer fcancel()
	owed, ferr := s.repo.FinishGrant(fctx, g.ID, state, g.Attempts+attempts, status)
	if ferr != nil {
		s.log.Error().Str("grant", g.ID).Str("error", ferr.Error()).Msg("discord: record role change outcome")
	}
	return grantResult{ok: err == nil, attempts: g.Attempts + attempts, status: status, owed: owed}
}

// InteractionTokenTTL is how long Discord accepts an interaction's token
// for editing its reply; grants keep it a little less, as our clock reads
// the interaction a moment after Discord made it.
const (
	InteractionTokenTTL = 15 * time.Minute
	tokenMargin         = time.Minute
)

// interaction is what a grant of c keeps to report to the member later.
// The expiry is read on the wall clock, as the database compares it with
// its own.
func (s *Service) interaction(c *call) store.GrantInteraction {
	appID := c.in.ApplicationID
	if appID == "" {
		appID = s.cfg.ApplicationID
	}
	return store.GrantInteraction{ID: c.in.ID, ApplicationID: appID, Token: c.in.Token, ExpiresAt: time.Now().Add(InteractionTokenTTL - tokenMargin)}
}

// grantReport is the edit of a command's reply once a role change it owed
// is finished by the grant worker or a retry: the reply said it would be
// retried, this says how it ended.
func grantReport(g store.RoleGrant, done bool) string {
	who, role := mention(g.DiscordUserID), "<@&"+g.RoleID+">"
	switch {
	case done && g.Action == store.GrantRemove:
		return "Update: Discord has now taken " + role + " from " + who + "."
	case done:
		return "Update: Discord has now given " + who + " " + role + "."
	case g.Action == store.GrantRemove:
		return "Update: Discord still would not take " + role + " from " + who + " after repeated tries; a server admin can retry it from Vectabase."
	default:
		return "Update: Discord still would not give " + who + " " + role + " after repeated tries; a server admin can retry it from Vectabase."
	}
}

// report edits the reply of the interaction a finished grant was owed to.
// Without a valid token (Discord's 15 minutes passed) nothing can be
// edited: the grant's state is what the seller sees.
func (s *Service) report(rest *RESTClient, g store.RoleGrant, owed *store.GrantInteraction, done bool) {
	if owed == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.budget.FollowUp)
	defer cancel()
	if err := rest.EditOriginal(ctx, owed.ApplicationID, owed.Token, grantReport(g, done)); err != nil {
		s.log.Warn().Str("grant", g.ID).Str("error", err.Error()).Msg("discord: report a finished role change")
	}
}

// auditGrant records the outcome of a grant finished outside a command
// (the grant worker). Best effort: Discord's change is already made.
func (s *Service) auditGrant(ctx context.Context, g store.RoleGrant, r grantResult, result string) {
	ev := vectabase.AuditEvent{ActorType: vectabase.ActorSystem, ActorID: "discord-grant-worker", Action: "discord.grant_finish",
		ResourceType: "bot_role_grant", ResourceID: g.ID, Result: result,
		Details: map[string]any{"guild_id": g.GuildID, "action": g.Action, "target_discord_id": g.DiscordUserID, "role_id": g.RoleID,
			"attempts": r.attempts, "reported": r.owed != nil}}
	if err := s.audit.Record(ctx, ev); err != nil {
		s.log.Error().Str("grant", g.ID).Str("error", err.Error()).Msg("discord: audit a finished role change")
	}
}

// undoRole takes back a role given by a command that is being rolled back.
func (s *Service) undoRole(c *call, g store.RoleGrant) {
	ctx, cancel := context.WithTimeout(context.Background(), s.budget.Role)
	defer cancel()
	if _, err := c.rest.RemoveRole(ctx, g.GuildID, g.DiscordUserID, g.RoleID); err != nil {
		s.log.Error().Str("requestId", c.req.RequestID).Str("error", err.Error()).Msg("discord: undo role change")
	}
}

// Grant worker settings: a grant still pending this long after its last
// try is retried; after maxGrantAttempts it is given up (failed).
const (
	staleGrantAge    = 2 * time.Minute
	maxGrantAttempts = 20
	grantBatch       = 20
)

// RunGrants retries, every interval until ctx ends, the role changes left
// pending by a command whose process stopped or whose Discord call kept
// failing (a removal is never rolled back: its role is owed until Discord
// takes it). It also forgets interaction ids older than the signature
// window. Several instances may run it: each grant is claimed by one.
func (s *Service) RunGrants(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.retryGrants(ctx)
		if _, err := s.repo.PurgeInteractions(ctx, s.now().Add(-2*MaxClockSkew)); err != nil && ctx.Err() == nil {
			s.log.Warn().Str("error", err.Error()).Msg("discord: purge interaction ids")
		}
		if _, err := s.repo.ClearExpiredGrantTokens(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Str("error", err.Error()).Msg("discord: clear expired interaction tokens")
		}
	}
}

// retryGrants runs one pass of RunGrants' retries.
func (s *Service) retryGrants(ctx context.Context) {
	grants, err := s.repo.ClaimStaleGrants(ctx, staleGrantAge, grantBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Str("error", err.Error()).Msg("discord: claim pending role changes")
		}
		return
	}
	rest := s.credentials(ctx).rest
	for _, g := range grants {
		r := s.applyGrant(ctx, rest, g)
		if r.ok {
			// The member was told it would be retried: tell them it is done.
			s.report(rest, g, r.owed, true)
			s.auditGrant(ctx, g, r, vectabase.ResultSuccess)
			continue
		}
		if g.Attempts+1 >= maxGrantAttempts {
			owed, err := s.repo.FinishGrant(ctx, g.ID, store.GrantFailed, r.attempts, r.status)
			if err != nil {
				s.log.Error().Str("grant", g.ID).Str("error", err.Error()).Msg("discord: give up role change")
				continue
			}
			r.owed = owed
			s.report(rest, g, owed, false)
			s.auditGrant(ctx, g, r, vectabase.ResultFailure)
			s.log.Error().Str("grant", g.ID).Msg("discord: role change given up after repeated failures")
		}
	}
}
