package discord

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ErrRobloxNotFound is returned when no (unbanned) Roblox account has the
// username.
var ErrRobloxNotFound = errors.New("roblox user not found")

// ErrRobloxUnavailable is returned when Roblox did not answer usefully
// within the caller's budget (down, rate limiting us, or slow).
var ErrRobloxUnavailable = errors.New("roblox users API unavailable")

// RobloxUser is a Roblox account.
type RobloxUser struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

// Cache bounds: usernames resolve to the same account for a while (a
// rename is rare), and the cache never grows past robloxCacheSize entries.
const (
	robloxCacheTTL  = 10 * time.Minute
	robloxCacheSize = 10000
)

// RobloxClient resolves Roblox usernames through the users API, retrying
// within its caller's context and caching answers.
type RobloxClient struct {
	base  string
	hc    *http.Client
	cache *ttlCache
}

// NewRobloxClient returns a client for the users API at base (default
// https://users.roblox.com).
func NewRobloxClient(base string, hc *http.Client) *RobloxClient {
	return &RobloxClient{base: strings.TrimRight(base, "/"), hc: hc, cache: newTTLCache(robloxCacheSize, robloxCacheTTL, time.Now)}
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
// (POST /v1/usernames/users, banned accounts excluded), or
// ErrRobloxNotFound. A 429 is retried after its Retry-After, a 5xx or
// network failure after a jittered backoff, while ctx's deadline allows;
// then the error wraps ErrRobloxUnavailable.
func (c *RobloxClient) LookupUsername(ctx context.Context, name string) (RobloxUser, error) {
	key := strings.ToLower(name)
	if u, ok := c.cache.get(key); ok {
		return u, nil
	}
	body, _ := json.Marshal(struct {
		Usernames          []string `json:"usernames"`
		ExcludeBannedUsers bool     `json:"excludeBannedUsers"`
	}{[]string{name}, true})
	var last error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		u, wait, err := c.once(ctx, body, attempt)
		if err == nil {
			c.cache.put(key, u)
			return u, nil
		}
		if wait < 0 {
			return RobloxUser{}, err
		}
		last = err
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return RobloxUser{}, fmt.Errorf("%w: %v", ErrRobloxUnavailable, last)
		case <-t.C:
		}
	}
	return RobloxUser{}, fmt.Errorf("%w: %v", ErrRobloxUnavailable, last)
}

// once makes one attempt; wait < 0 means the answer is final.
func (c *RobloxClient) once(ctx context.Context, body []byte, attempt int) (RobloxUser, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/usernames/users", bytes.NewReader(body))
	if err != nil {
		return RobloxUser{}, -1, fmt.Errorf("roblox username lookup: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return RobloxUser{}, -1, fmt.Errorf("%w: %v", ErrRobloxUnavailable, ctx.Err())
		}
		return RobloxUser{}, backoff(attempt), errors.New("roblox username lookup: network error")
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return RobloxUser{}, retryAfter(resp.Header, nil, attempt), errors.New("roblox username lookup: HTTP 429")
	case resp.StatusCode >= 500:
		return RobloxUser{}, backoff(attempt), fmt.Errorf("roblox username lookup: HTTP %d", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return RobloxUser{}, -1, fmt.Errorf("%w: HTTP %d", ErrRobloxUnavailable, resp.StatusCode)
	}
	var out struct {
		Data []RobloxUser `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return RobloxUser{}, -1, fmt.Errorf("%w: malformed answer", ErrRobloxUnavailable)
	}
	// One username was asked for, so the first account is the answer (its
	// name may differ in case, or be the account's current name).
	for _, u := range out.Data {
		if u.ID > 0 {
			return u, 0, nil
		}
	}
	return RobloxUser{}, -1, ErrRobloxNotFound
}

// ttlCache is a bounded LRU whose entries also expire after ttl.
type ttlCache struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	now   func() time.Time
	ll    *list.List
	items map[string]*list.Element
}

type cacheEntry struct {
	key   string
	user  RobloxUser
	until time.Time
}

func newTTLCache(size int, ttl time.Duration, now func() time.Time) *ttlCache {
	return &ttlCache{size: size, ttl: ttl, now: now, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *ttlCache) get(key string) (RobloxUser, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return RobloxUser{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.until) {
		c.ll.Remove(el)
		delete(c.items, key)
		return RobloxUser{}, false
	}
	c.ll.MoveToFront(el)
	return e.user, true
}

func (c *ttlCache) put(key string, u RobloxUser) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cacheEntry{key, u, c.now().Add(c.ttl)}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key, u, c.now().Add(c.ttl)})
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

func (c *ttlCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
