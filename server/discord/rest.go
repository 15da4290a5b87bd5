package discord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RESTClient calls Discord's REST API as the bot. The token is sent only in
// the Authorization header and never appears in an error; interaction
// tokens (in webhook paths) are masked in errors too.
type RESTClient struct {
	base  string
	token string
	hc    *http.Client
}

// NewRESTClient returns a client for the API at base (e.g.
// https://discord.com/api/v10) authenticating with the bot token.
func NewRESTClient(base, token string, hc *http.Client) *RESTClient {
	return &RESTClient{base: strings.TrimRight(base, "/"), token: token, hc: hc}
}

// RESTError is a non-2xx answer from Discord.
type RESTError struct {
	Method string
	Path   string
	Status int
}

func (e *RESTError) Error() string {
	return fmt.Sprintf("discord %s %s: HTTP %d", e.Method, e.Path, e.Status)
}

// maxAttempts bounds the tries of one call; the caller's context bounds
// their time.
const maxAttempts = 6

// request is one REST call.
type request struct {
	method, path string
	shown        string // the path as errors show it ("" : path)
	body         any    // JSON, or url.Values as a form
	bearer       string // a user's OAuth token instead of the bot's ("": bot)
	noAuth       bool   // webhook calls authenticate by their path
	out          any    // decodes a 2xx JSON answer
}

// do sends r, retrying a 429 after Discord's Retry-After and a 5xx or
// network failure after an exponential backoff with full jitter, as long
// as ctx allows; a wait that would pass ctx's deadline is not started. It
// returns the attempts made.
func (c *RESTClient) do(ctx context.Context, r request) (int, error) {
	shown := r.shown
	if shown == "" {
		shown = r.path
	}
	var payload []byte
	ctype := ""
	switch b := r.body.(type) {
	case nil:
	case url.Values:
		payload, ctype = []byte(b.Encode()), "application/x-www-form-urlencoded"
	default:
		var err error
		if payload, err = json.Marshal(b); err != nil {
			return 0, err
		}
		ctype = "application/json"
	}
	var last error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		wait, err := c.once(ctx, r, shown, payload, ctype, attempt)
		if err == nil {
			return attempt, nil
		}
		last = err
		if wait < 0 {
			return attempt, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return attempt, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, last
		case <-t.C:
		}
	}
	return maxAttempts, last
}

// once makes one attempt; wait < 0 means do not retry.
func (c *RESTClient) once(ctx context.Context, r request, shown string, payload []byte, ctype string, attempt int) (time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, rd)
	if err != nil {
		return -1, fmt.Errorf("discord %s %s: bad request", r.method, shown)
	}
	switch {
	case r.bearer != "":
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	case !r.noAuth:
		req.Header.Set("Authorization", "Bot "+c.token)
	}
	req.Header.Set("User-Agent", "DiscordBot (https://github.com/vectabase/vectabase, 1)")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, fmt.Errorf("discord %s %s: %w", r.method, shown, ctx.Err())
		}
		// The URL may hold an interaction token: name the failure only.
		return backoff(attempt), fmt.Errorf("discord %s %s: network error", r.method, shown)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 == 2 {
		if r.out != nil && json.Unmarshal(body, r.out) != nil {
			return -1, fmt.Errorf("discord %s %s: malformed JSON answer", r.method, shown)
		}
		return 0, nil
	}
	rerr := &RESTError{Method: r.method, Path: shown, Status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return retryAfter(resp.Header, body, attempt), rerr
	case resp.StatusCode >= 500:
		return backoff(attempt), rerr
	default:
		return -1, rerr
	}
}

// backoff is the wait before attempt+1: full jitter over 100 ms × 2^(n-1),
// at most 2 s.
func backoff(attempt int) time.Duration {
	ceil := min(100*time.Millisecond<<(attempt-1), 2*time.Second)
	return time.Duration(rand.Int64N(int64(ceil))) + 10*time.Millisecond
}

// retryAfter reads a 429's wait: the Retry-After header (seconds, maybe
// fractional) or Discord's JSON retry_after; without either, a backoff.
func retryAfter(h http.Header, body []byte, attempt int) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 3600 {
			return time.Duration(f * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t), 0)
		}
	}
	var j struct {
		RetryAfter float64 `json:"retry_after"`
	}
	if json.Unmarshal(body, &j) == nil && j.RetryAfter > 0 && j.RetryAfter < 3600 {
		return time.Duration(j.RetryAfter * float64(time.Second))
	}
	return backoff(attempt)
}

func rolePath(guildID, userID, roleID string) string {
	return "/guilds/" + url.PathEscape(guildID) + "/members/" + url.PathEscape(userID) + "/roles/" + url.PathEscape(roleID)
}

// AddRole gives member userID of guildID the role roleID
// (PUT /guilds/{guild.id}/members/{user.id}/roles/{role.id}), with
// retries; it returns the attempts made.
func (c *RESTClient) AddRole(ctx context.Context, guildID, userID, roleID string) (int, error) {
	return c.do(ctx, request{method: http.MethodPut, path: rolePath(guildID, userID, roleID)})
}

// RemoveRole takes the role roleID from member userID of guildID
// (DELETE /guilds/{guild.id}/members/{user.id}/roles/{role.id}).
func (c *RESTClient) RemoveRole(ctx context.Context, guildID, userID, roleID string) (int, error) {
	return c.do(ctx, request{method: http.MethodDelete, path: rolePath(guildID, userID, roleID)})
}

// RegisterCommands replaces the application's global commands with cmds
// (PUT /applications/{application.id}/commands, a bulk overwrite).
func (c *RESTClient) RegisterCommands(ctx context.Context, applicationID string, cmds []ApplicationCommand) error {
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/applications/" + url.PathEscape(applicationID) + "/commands", body: cmds})
	return err
}

// EditOriginal replaces the content of an interaction's original (here:
// deferred) response: PATCH /webhooks/{application.id}/{interaction.token}/messages/@original.
// The interaction token is the authentication and is never shown in errors.
func (c *RESTClient) EditOriginal(ctx context.Context, applicationID, interactionToken, content string) error {
	if applicationID == "" || interactionToken == "" {
		return errors.New("discord: edit original response: no application id or interaction token")
	}
	body := struct {
		Content         string          `json:"content"`
		AllowedMentions allowedMentions `json:"allowed_mentions"`
	}{content, allowedMentions{Parse: []string{}}}
	_, err := c.do(ctx, request{method: http.MethodPatch,
		path:  "/webhooks/" + url.PathEscape(applicationID) + "/" + url.PathEscape(interactionToken) + "/messages/@original",
		shown: "/webhooks/" + applicationID + "/[token]/messages/@original", body: body, noAuth: true})
	return err
}

// OAuthToken is the part of Discord's token answer the install flow reads.
type OAuthToken struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	Scope       string `json:"scope"`
	Guild       *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"guild"`
}

// ExchangeCode trades an authorization code for the user's token
// (POST /oauth2/token). The token is used by the caller and never stored.
func (c *RESTClient) ExchangeCode(ctx context.Context, clientID, clientSecret, code, redirectURI string) (OAuthToken, error) {
	var tok OAuthToken
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientID}, "client_secret": {clientSecret}}
	if redirectURI != "" {
		form.Set("redirect_uri", redirectURI)
	}
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/oauth2/token", body: form, noAuth: true, out: &tok})
	return tok, err
}

// PartialGuild is one entry of GET /users/@me/guilds.
type PartialGuild struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Owner       bool   `json:"owner"`
	Permissions string `json:"permissions"`
}

// UserGuilds lists the guilds of the user whose OAuth token is bearer
// (GET /users/@me/guilds, needs the guilds scope).
func (c *RESTClient) UserGuilds(ctx context.Context, bearer string) ([]PartialGuild, error) {
	var gs []PartialGuild
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/users/@me/guilds", bearer: bearer, out: &gs})
	return gs, err
}
