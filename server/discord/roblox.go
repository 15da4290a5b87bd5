package discord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ErrRobloxNotFound is returned when no (unbanned) Roblox account has the
// username.
var ErrRobloxNotFound = errors.New("roblox user not found")

// RobloxUser is a Roblox account.
type RobloxUser struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

// RobloxClient resolves Roblox usernames through the users API.
type RobloxClient struct {
	base string
	hc   *http.Client
}

// NewRobloxClient returns a client for the users API at base (default
// https://users.roblox.com).
func NewRobloxClient(base string, hc *http.Client) *RobloxClient {
	return &RobloxClient{base: strings.TrimRight(base, "/"), hc: hc}
}

// validRobloxUsername reports whether s can be a Roblox username: 3 to 20
// letters, digits and underscores. Anything else is refused before a call.
func validRobloxUsername(s string) bool {
	if len(s) < 3 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// LookupUsername returns the account called name
// (POST /v1/usernames/users, banned accounts excluded), or ErrRobloxNotFound.
func (c *RobloxClient) LookupUsername(ctx context.Context, name string) (RobloxUser, error) {
	body, _ := json.Marshal(struct {
		Usernames          []string `json:"usernames"`
		ExcludeBannedUsers bool     `json:"excludeBannedUsers"`
	}{[]string{name}, true})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/usernames/users", bytes.NewReader(body))
	if err != nil {
		return RobloxUser{}, fmt.Errorf("roblox username lookup: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return RobloxUser{}, fmt.Errorf("roblox username lookup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return RobloxUser{}, fmt.Errorf("roblox username lookup: HTTP %d", resp.StatusCode)
	}
	var out struct {
		Data []RobloxUser `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return RobloxUser{}, fmt.Errorf("roblox username lookup: malformed answer")
	}
	// One username was asked for, so the first account is the answer (its
	// name may differ in case, or be the account's current name).
	for _, u := range out.Data {
		if u.ID > 0 {
			return u, nil
		}
	}
	return RobloxUser{}, ErrRobloxNotFound
}
