package discord

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Grant is a role change the bot owes or owed Discord (bot_role_grants) as
// the API shows it. It never carries the interaction's token.
type Grant struct {
	ID              string    `json:"id"`
	DiscordServerID string    `json:"discordServerId"`
	GuildID         string    `json:"guildId"`
	DiscordUserID   string    `json:"discordUserId"`
	RoleID          string    `json:"roleId"`
	Action          string    `json:"action"` // add or remove
	State           string    `json:"state"`  // pending, failed or done
	Attempts        int       `json:"attempts"`
	LastStatus      *int      `json:"lastStatus"` // Discord's last HTTP status
	Command         string    `json:"command"`
	InteractionID   *string   `json:"interactionId"`
	CanReport       bool      `json:"canReport"` // the member's reply can still be edited
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

func grantOf(g store.RoleGrant) Grant {
	return Grant{ID: g.ID, DiscordServerID: g.ServerID, GuildID: g.GuildID, DiscordUserID: g.DiscordUserID, RoleID: g.RoleID,
		Action: g.Action, State: g.State, Attempts: g.Attempts, LastStatus: g.LastStatus, Command: g.Command,
		InteractionID: g.InteractionID, CanReport: g.CanReport, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

// Grant list paging: ?limit (1 to MaxGrantPage, default DefaultGrantPage).
const (
	DefaultGrantPage = 50
	MaxGrantPage     = 200
)

// ListGrants returns guildID's role grants in status ("" for all;
// pending, failed or done), newest first, a page at a time. Only the
// guild's owner (or the local operator) may; another's guild is
// NOT_FOUND.
func (s *Service) ListGrants(ctx context.Context, a Actor, guildID, status string, p store.Page) (List[Grant], error) {
	switch status {
	case "", store.GrantPending, store.GrantFailed, store.GrantDone:
	default:
		return List[Grant]{}, validation("status: must be pending, failed or done")
	}
	if p.Limit == 0 {
		p.Limit = DefaultGrantPage
	}
	if p.Limit < 1 || p.Limit > MaxGrantPage {
		return List[Grant]{}, validation("limit: must be an integer from 1 to 200")
	}
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return List[Grant]{}, err
	}
	rows, next, err := s.repo.ListGrants(ctx, srv.ID, status, p)
	if err != nil {
		return List[Grant]{}, err
	}
	out := listOf(rows, grantOf)
	if next != nil {
		c := next.Encode()
		out.NextCursor = &c
	}
	return out, nil
}

var errNoGrant = vectabase.Errorf(vectabase.ENOTFOUND, "no such role grant")

// RetryGrant retries failed role grant id of guildID (owner-only, like
// ListGrants): it is made pending again (audited, discord.grant_retry) and
// tried at once within the role budget. It answers the grant as it then
// stands: done, or pending (the grant worker keeps trying). A grant that
// is not failed, or whose change was taken back (an add rolled back, a
// removal whose member was recorded again), is CONFLICT.
func (s *Service) RetryGrant(ctx context.Context, a Actor, guildID, id string) (Grant, error) {
	if uuid.Validate(id) != nil {
		return Grant{}, validation("id: must be a UUID")
	}
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return Grant{}, err
	}
	g, err := s.repo.RetryGrant(ctx, srv.ID, id, func(ctx context.Context, g store.RoleGrant) error {
		return s.audit.Record(ctx, a.event("discord.grant_retry", "bot_role_grant", g.ID, map[string]any{
			"guild_id": guildID, "action": g.Action, "target_discord_id": g.DiscordUserID, "role_id": g.RoleID}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Grant{}, errNoGrant
	case errors.Is(err, store.ErrGrantNotFailed):
		return Grant{}, vectabase.Errorf(vectabase.ECONFLICT, "only a failed role grant can be retried")
	case errors.Is(err, store.ErrGrantNotOwed):
		return Grant{}, vectabase.Errorf(vectabase.ECONFLICT, "the change this role grant belonged to was taken back; the role is not owed")
	case err != nil:
		return Grant{}, err
	}
	rest := s.credentials(ctx).rest
	r := s.applyGrant(ctx, rest, g)
	s.report(rest, g, r.owed, true)
	if now, err := s.repo.FindGrant(ctx, srv.ID, g.ID); err == nil {
		g = now
	}
	return grantOf(g), nil
}
