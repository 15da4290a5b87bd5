package discord

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/vectabase/vectabase/store"
)

// GuildConfigTTL is how long an instance reuses a guild's registration and
// command rules for commands that only read (/whitelist check): a rule
// changed through another instance applies within it; through this one,
// at once. Commands that change something always read them fresh.
const GuildConfigTTL = 2 * time.Second

const maxCachedGuilds = 10000

type guildConfig struct {
	server *store.DiscordServer
	rules  []store.CommandPermission
	until  time.Time
}

// guildCache holds recently read guild configurations.
type guildCache struct {
	mu sync.Mutex
	m  map[string]guildConfig
}

func newGuildCache() *guildCache { return &guildCache{m: map[string]guildConfig{}} }

func (g *guildCache) forget(guildID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, guildID)
}

// readConfig returns guildID's registration and the rules that match the
// command names and the caller's roles (memberRoles and the guild's
// @everyone role, whose id is guildID), from the cache when fresh.
func (s *Service) readConfig(ctx context.Context, guildID string, names, memberRoles []string) (store.CommandContext, error) {
	now := s.now()
	s.guilds.mu.Lock()
	gc, ok := s.guilds.m[guildID]
	s.guilds.mu.Unlock()
	if !ok || !now.Before(gc.until) {
		srv, rules, err := s.repo.GuildConfig(ctx, guildID)
		if err != nil {
			return store.CommandContext{}, err
		}
		gc = guildConfig{server: srv, rules: rules, until: now.Add(GuildConfigTTL)}
		s.guilds.mu.Lock()
		if len(s.guilds.m) >= maxCachedGuilds {
			clear(s.guilds.m)
		}
		s.guilds.m[guildID] = gc
		s.guilds.mu.Unlock()
	}
	out := store.CommandContext{Fresh: true, Server: gc.server}
	for _, r := range gc.rules {
		if slices.Contains(names, r.Command) && (r.RoleID == guildID || slices.Contains(memberRoles, r.RoleID)) {
			out.Rules = append(out.Rules, r)
		}
	}
	return out, nil
}
