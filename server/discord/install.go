package discord

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// The bot's install: Discord's OAuth2 authorization with the bot and
// applications.commands scopes (to join the guild and own its commands)
// and identify and guilds (to ask Discord which guilds the installing
// user may manage).
const (
	InstallScopes = "bot applications.commands identify guilds"
	// InstallPermissions is MANAGE_ROLES: all the bot does in a guild is
	// give and take product roles.
	InstallPermissions  = 1 << 28
	permManageGuild     = 5
	installStateTTL     = 10 * time.Minute
	installStatePurpose = "discord_install_state"
)

var (
	errInstallOff = vectabase.Errorf(vectabase.EUNAVAILABLE,
		"the Discord install is not configured (DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET, DISCORD_INSTALL_REDIRECT_URI)")
	errBadInstallState = vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid, expired or already used install state")
)

// installState is what the signed state carries: who asked, for which
// store, until when, and a nonce that makes it single-use.
type installState struct {
	nonce   [16]byte
	expires time.Time
	user    uuid.UUID
	store   uuid.UUID
}

const installStateLen = 16 + 8 + 16 + 16

func (s *Service) signState(st installState) (string, error) {
	p := make([]byte, 0, installStateLen)
	p = append(p, st.nonce[:]...)
	p = binary.BigEndian.AppendUint64(p, uint64(st.expires.Unix()))
	p = append(p, st.user[:]...)
	p = append(p, st.store[:]...)
	mac, err := s.kr.MAC(installStatePurpose, p)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	return b64.EncodeToString(p) + "." + b64.EncodeToString(mac), nil
}

// openState checks a state's MAC and expiry (not yet its single use).
func (s *Service) openState(state string) (installState, error) {
	var st installState
	b64 := base64.RawURLEncoding
	p, m, ok := strings.Cut(state, ".")
	if !ok || len(state) > 300 {
		return st, errBadInstallState
	}
	payload, err1 := b64.DecodeString(p)
	mac, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || len(payload) != installStateLen {
		return st, errBadInstallState
	}
	want, err := s.kr.MAC(installStatePurpose, payload)
	if err != nil {
		return st, err
	}
	if !hmac.Equal(mac, want) {
		return st, errBadInstallState
	}
	copy(st.nonce[:], payload[:16])
	st.expires = time.Unix(int64(binary.BigEndian.Uint64(payload[16:24])), 0)
	copy(st.user[:], payload[24:40])
	copy(st.store[:], payload[40:56])
	if !s.now().Before(st.expires) {
		return st, errBadInstallState
	}
	return st, nil
}

// authorizeURL is Discord's authorization page (or the double's).
func (s *Service) authorizeURL() string {
	if b := strings.TrimRight(s.cfg.APIBase, "/"); b == "" || strings.HasPrefix(b, "https://discord.com/api") {
		return "https://discord.com/oauth2/authorize"
	}
	return s.cfg.APIBaseOrDefault() + "/oauth2/authorize"
}

func (s *Service) installConfigured(cr *botCreds) bool {
	return s.cfg.ApplicationID != "" && cr.secret != "" && s.cfg.InstallRedirectURI != "" && s.db != nil && s.kr != nil
}

// InstallURL returns the Discord authorization URL that adds the bot to a
// guild for storeID, which userID must own (else NOT_FOUND), with a state
// signed for that user and store, valid 10 minutes and usable once.
// UNAVAILABLE when the install is not configured.
func (s *Service) InstallURL(ctx context.Context, userID, storeID string) (string, error) {
	if uuid.Validate(storeID) != nil {
		return "", validation("storeId: must be a UUID")
	}
	cr := s.credentials(ctx)
	if !s.installConfigured(cr) {
		return "", errInstallOff
	}
	if _, err := store.NewMarketplace(s.db, s.kr).GetStore(ctx, userID, storeID); errors.Is(err, store.ErrNotFound) {
		return "", vectabase.Errorf(vectabase.ENOTFOUND, "no such store")
	} else if err != nil {
		return "", err
	}
	st := installState{expires: s.now().Add(installStateTTL), user: uuid.MustParse(userID), store: uuid.MustParse(storeID)}
	if _, err := rand.Read(st.nonce[:]); err != nil {
		return "", err
	}
	state, err := s.signState(st)
	if err != nil {
		return "", err
	}
	q := url.Values{
		"client_id":     {s.cfg.ApplicationID},
		"scope":         {InstallScopes},
		"permissions":   {strconv.Itoa(InstallPermissions)},
		"response_type": {"code"},
		"redirect_uri":  {s.cfg.InstallRedirectURI},
		"state":         {state},
	}
	return s.authorizeURL() + "?" + q.Encode(), nil
}

// Callback is what Discord sends the browser back with.
type Callback struct {
	Code, State, GuildID, Error string
	IP, RequestID               string
}

// InstallResult is the callback's answer.
type InstallResult struct {
	Server  Server `json:"server"`
	Outcome string `json:"outcome"` // created, unchanged or moved
}

// InstallCallback completes an install: it consumes the state, exchanges
// the code, asks Discord (GET /users/@me/guilds with the user's token)
// whether the user owns the guild or has MANAGE_GUILD (or ADMINISTRATOR)
// there, and records the guild for the state's store. UNAUTHORIZED for a
// forged, expired or replayed state or a refused code; FORBIDDEN when the
// user cannot manage the guild; CONFLICT when the guild belongs to a store
// of another owner.
func (s *Service) InstallCallback(ctx context.Context, cb Callback) (InstallResult, error) {
	cr := s.credentials(ctx)
	if !s.installConfigured(cr) {
		return InstallResult{}, errInstallOff
	}
	if cb.Error != "" {
		return InstallResult{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "the bot was not authorized in Discord")
	}
	st, err := s.openState(cb.State)
	if err == nil {
		err = s.db.UseOAuthState(ctx, "install-"+hex.EncodeToString(st.nonce[:]), st.expires)
		if errors.Is(err, store.ErrConflict) {
			err = errBadInstallState
		}
	}
	a := Actor{Type: vectabase.ActorUser, ID: st.user.String(), IP: cb.IP, RequestID: cb.RequestID}
	if err != nil {
		if vectabase.ErrorCode(err) == vectabase.EUNAUTHORIZED {
			s.auditInstallRefusal(ctx, Actor{Type: vectabase.ActorAnonymous, IP: cb.IP, RequestID: cb.RequestID}, "bad_state", cb.GuildID)
		}
		return InstallResult{}, err
	}
	if cb.Code == "" || len(cb.Code) > 512 {
		return InstallResult{}, validation("code: required")
	}
	if cb.GuildID != "" && !isSnowflake(cb.GuildID) {
		return InstallResult{}, validation("guild_id: must be a Discord id")
	}
	tok, err := cr.rest.ExchangeCode(ctx, s.cfg.ApplicationID, cr.secret, cb.Code, s.cfg.InstallRedirectURI)
	if err != nil {
		return InstallResult{}, discordOAuthError(err)
	}
	if tok.AccessToken == "" || (tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "Bearer")) {
		return InstallResult{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "Discord did not accept the authorization code")
	}
	guildID, name := cb.GuildID, ""
	if tok.Guild != nil {
		if cb.GuildID != "" && cb.GuildID != tok.Guild.ID {
			return InstallResult{}, vectabase.Errorf(vectabase.EBADREQUEST, "guild_id does not match the guild Discord authorized")
		}
		guildID, name = tok.Guild.ID, tok.Guild.Name
	}
	if !isSnowflake(guildID) {
		return InstallResult{}, validation("guild_id: Discord named no guild (was the bot scope granted?)")
	}
	guilds, err := cr.rest.UserGuilds(ctx, tok.AccessToken)
	if err != nil {
		return InstallResult{}, discordOAuthError(err)
	}
	var g *PartialGuild
	for i := range guilds {
		if guilds[i].ID == guildID {
			g = &guilds[i]
		}
	}
	if g == nil || !canManage(*g) {
		s.auditInstallRefusal(ctx, a, "cannot_manage_guild", guildID)
		return InstallResult{}, vectabase.Errorf(vectabase.EFORBIDDEN, "you do not own or manage that Discord server")
	}
	if name == "" {
		name = g.Name
	}
	var gname *string
	if name != "" {
		if len(name) > 100 {
			name = name[:100]
		}
		gname = &name
	}
	srv, outcome, err := s.install(ctx, a, store.InstallServer{GuildID: guildID, GuildName: gname, StoreID: st.store.String(), UserID: st.user.String()})
	if err != nil {
		return InstallResult{}, err
	}
	return InstallResult{Server: srv, Outcome: outcome}, nil
}

// canManage reports whether a guild of /users/@me/guilds is one the user
// owns or has MANAGE_GUILD (or ADMINISTRATOR) in.
func canManage(g PartialGuild) bool {
	if g.Owner {
		return true
	}
	if g.Permissions == "" || len(g.Permissions) > 80 {
		return false
	}
	n, ok := new(big.Int).SetString(g.Permissions, 10)
	return ok && n.Sign() > 0 && (n.Bit(permManageGuild) == 1 || n.Bit(permAdministrator) == 1)
}

func (s *Service) auditInstallRefusal(ctx context.Context, a Actor, reason, guildID string) {
	ev := a.event("discord.server_install", "discord_server", "", map[string]any{"reason": reason, "guild_id": guildID})
	ev.Result = vectabase.ResultDenied
	if err := s.audit.Record(ctx, ev); err != nil {
		s.log.Error().Str("requestId", a.RequestID).Str("error", err.Error()).Msg("audit discord install refusal")
	}
}

// discordOAuthError: a 4xx means Discord refused the code; anything else
// is Discord being unavailable. Discord's bodies are never passed on.
func discordOAuthError(err error) error {
	var re *RESTError
	if errors.As(err, &re) && re.Status >= 400 && re.Status < 500 && re.Status != 429 {
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "Discord did not accept the authorization code")
	}
	return vectabase.WrapError(vectabase.EUNAVAILABLE, "Discord is unavailable", err)
}
