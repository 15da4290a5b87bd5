package discord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// RESTClient calls Discord's REST API as the bot. The token is sent only in
// the Authorization header and never appears in an error.
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

func (c *RESTClient) do(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("discord %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bot "+c.token)
	req.Header.Set("User-Agent", "DiscordBot (https://github.com/vectabase/vectabase, 1)")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// url.Error quotes the URL, which holds no secret; the token is
		// only in a header.
		return fmt.Errorf("discord %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return &RESTError{Method: method, Path: path, Status: resp.StatusCode}
	}
	return nil
}

func rolePath(guildID, userID, roleID string) string {
	return "/guilds/" + url.PathEscape(guildID) + "/members/" + url.PathEscape(userID) + "/roles/" + url.PathEscape(roleID)
}

// AddRole gives member userID of guildID the role roleID
// (PUT /guilds/{guild.id}/members/{user.id}/roles/{role.id}).
func (c *RESTClient) AddRole(ctx context.Context, guildID, userID, roleID string) error {
	return c.do(ctx, http.MethodPut, rolePath(guildID, userID, roleID), nil)
}

// RemoveRole takes the role roleID from member userID of guildID
// (DELETE /guilds/{guild.id}/members/{user.id}/roles/{role.id}).
func (c *RESTClient) RemoveRole(ctx context.Context, guildID, userID, roleID string) error {
	return c.do(ctx, http.MethodDelete, rolePath(guildID, userID, roleID), nil)
}

// RegisterCommands replaces the application's global commands with cmds
// (PUT /applications/{application.id}/commands, a bulk overwrite).
func (c *RESTClient) RegisterCommands(ctx context.Context, applicationID string, cmds []ApplicationCommand) error {
	return c.do(ctx, http.MethodPut, "/applications/"+url.PathEscape(applicationID)+"/commands", cmds)
}
