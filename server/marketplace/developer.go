package marketplace

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// API key shape: "vb_live_" and 32 random bytes in base62, always 43
// characters (zero-padded), so a key's length alone rules out junk.
const (
	keyTag        = "vb_live_"
	keyBodyLen    = 43
	keyPrefixLen  = 12
	base62Digits  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	headerAPIKey  = "X-API-Key"
	defaultRate   = 60
	maxRate       = 1_000_000
	maxKeyNameLen = 100

	minImportedKeyBody = 16
	maxImportedKeyBody = 64
)

// ScopeWLRead is the scope /api/whitelist/check needs.
const ScopeWLRead = "whitelist:read"

// localKeyUse is the Fiber local holding the request's store.KeyUse; a
// private type, so no other package's local can collide with it.
type localKeyUseKey struct{}

var localKeyUse = localKeyUseKey{}

// knownScopes are the scopes a key may carry. /api/developer/verify needs
// none; /api/whitelist/check needs whitelist:read;
// /api/developer/obfuscation/usage needs obfuscate.
var knownScopes = []string{ScopeWLRead, ScopeObfuscate}

// newAPIKey returns a fresh key.
func newAPIKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	s := new(big.Int).SetBytes(b).Text(62)
	return keyTag + strings.Repeat("0", keyBodyLen-len(s)) + s
}

// wellFormedKey reports whether k has the shape of a key, so junk is
// refused without a database round trip. Keys imported from Supabase keep
// working (contract section 6) and have other lengths (vb_live_ and 32 hex
// digits in the old project), so any base62 body of 16 to 64 characters is
// looked up; only its keyed hash can match.
func wellFormedKey(k string) bool {
	if len(k) < len(keyTag)+minImportedKeyBody || len(k) > len(keyTag)+maxImportedKeyBody || !strings.HasPrefix(k, keyTag) {
		return false
	}
	for i := len(keyTag); i < len(k); i++ {
		if strings.IndexByte(base62Digits, k[i]) < 0 {
			return false
		}
	}
	return true
}

// APIKeyResource is a developer API key. Key is present only in the
// response that created it.
type APIKeyResource struct {
	ID                 string     `json:"id"`
	Key                string     `json:"key,omitempty"`
	Prefix             string     `json:"prefix"`
	Name               string     `json:"name"`
	Scopes             []string   `json:"scopes"`
	RateLimitPerMinute int        `json:"rateLimitPerMinute"`
	LastUsedAt         *time.Time `json:"lastUsedAt"`
	CreatedAt          time.Time  `json:"createdAt"`
}

func apiKeyResource(k store.APIKey) APIKeyResource {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return APIKeyResource{ID: k.ID, Prefix: k.Prefix, Name: k.Name, Scopes: scopes,
		RateLimitPerMinute: k.RateLimitPerMinute, LastUsedAt: k.LastUsedAt, CreatedAt: k.CreatedAt}
}

// APIKeyInput is the body of POST and PATCH /api/developer/keys.
type APIKeyInput struct {
	Name               *string  `json:"name"`
	Scopes             []string `json:"scopes"`
	RateLimitPerMinute *int     `json:"rateLimitPerMinute"`
}

func (in *APIKeyInput) validate(create bool) error {
	if create {
		if err := required("name", in.Name); err != nil {
			return err
		}
	}
	if err := checkText("name", in.Name, 1, maxKeyNameLen); err != nil {
		return err
	}
	for i, sc := range in.Scopes {
		if !slices.Contains(knownScopes, sc) {
			return invalid("scopes["+strconv.Itoa(i)+"]", "unknown scope; known scopes: "+strings.Join(knownScopes, ", "))
		}
	}
	if in.Scopes != nil {
		slices.Sort(in.Scopes)
		in.Scopes = slices.Compact(in.Scopes)
	}
	return checkRange("rateLimitPerMinute", in.RateLimitPerMinute, 1, maxRate)
}

// KeyActor is who changes an API key, as the audit trail records it.
type KeyActor struct {
	UserID    string
	IP        string
	RequestID string
}

// CreateAPIKey makes a key for developer userID. The key is in the result
// and nowhere else: the database keeps only its keyed hash and prefix.
func (s *Service) CreateAPIKey(ctx context.Context, userID string, in APIKeyInput) (APIKeyResource, error) {
	return s.createAPIKey(ctx, KeyActor{UserID: userID}, in)
}

func (s *Service) createAPIKey(ctx context.Context, who KeyActor, in APIKeyInput) (APIKeyResource, error) {
	if err := in.validate(true); err != nil {
		return APIKeyResource{}, err
	}
	rate := defaultRate
	if in.RateLimitPerMinute != nil {
		rate = *in.RateLimitPerMinute
	}
	key := newAPIKey()
	hash, err := s.kr.MAC("api_key", []byte(key))
	if err != nil {
		return APIKeyResource{}, err
	}
	k, err := s.repo.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: who.UserID, Name: *in.Name, Hash: hash,
		Prefix: key[:keyPrefixLen], Scopes: in.Scopes, RateLimitPerMinute: rate})
	if err != nil {
		return APIKeyResource{}, err
	}
	if err := s.auditKey(ctx, who, "api_key.create", k); err != nil {
		// Fail closed: a key whose creation cannot be audited is revoked
		// before anyone has seen it.
		if rerr := s.repo.RevokeAPIKey(context.WithoutCancel(ctx), who.UserID, k.ID); rerr != nil {
			s.log.Error().Str("error", rerr.Error()).Str("keyId", k.ID).Msg("revoke an API key whose creation was not audited")
		}
		return APIKeyResource{}, err
	}
	r := apiKeyResource(k)
	r.Key = key
	return r, nil
}

// UpdateAPIKey renames a live key of userID or changes its scopes or limit.
func (s *Service) UpdateAPIKey(ctx context.Context, userID, id string, in APIKeyInput) (APIKeyResource, error) {
	return s.updateAPIKey(ctx, KeyActor{UserID: userID}, id, in)
}

func (s *Service) updateAPIKey(ctx context.Context, who KeyActor, id string, in APIKeyInput) (APIKeyResource, error) {
	if err := in.validate(false); err != nil {
		return APIKeyResource{}, err
	}
	k, err := s.repo.UpdateAPIKey(ctx, who.UserID, id, in.Name, in.Scopes, in.RateLimitPerMinute)
	if err != nil {
		return APIKeyResource{}, mapErr(err, "API key")
	}
	if err := s.auditKey(ctx, who, "api_key.update", k); err != nil {
		return APIKeyResource{}, err
	}
	return apiKeyResource(k), nil
}

// RevokeAPIKey revokes a live key of userID; it stops working at once.
func (s *Service) RevokeAPIKey(ctx context.Context, who KeyActor, id string) error {
	if err := s.repo.RevokeAPIKey(ctx, who.UserID, id); err != nil {
		return mapErr(err, "API key")
	}
	return s.auditKey(ctx, who, "api_key.revoke", store.APIKey{ID: id})
}

// auditKey records a change to API key k by who: the key's id, and for a
// created or changed key its name, scopes and limit, never the key or its
// prefix.
func (s *Service) auditKey(ctx context.Context, who KeyActor, action string, k store.APIKey) error {
	var details map[string]any
	if action != "api_key.revoke" {
		details = map[string]any{"name": k.Name, "scopes": k.Scopes, "rateLimitPerMinute": k.RateLimitPerMinute}
	}
	err := s.aud.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: who.UserID,
		Action: action, ResourceType: "api_key", ResourceID: k.ID, Result: vectabase.ResultSuccess,
		IP: who.IP, RequestID: who.RequestID, Details: details})
	if err != nil {
		return vectabase.WrapInternal(fmt.Errorf("marketplace: audit %s: %w", action, err))
	}
	return nil
}

func keyActor(c *fiber.Ctx, a Auth) KeyActor {
	return KeyActor{UserID: a.UserID(c), IP: server.ClientIP(c), RequestID: server.RequestID(c)}
}

// keyUse is what the API-key middleware leaves for the handler.
func keyUseOf(c *fiber.Ctx) store.KeyUse {
	u, _ := c.Locals(localKeyUse).(store.KeyUse)
	return u
}

// APIKeyRoute wraps every API-key route: after the handler has answered
// (errors included, through the app's error handler, so the logged status
// is the one sent) it queues the request's api_request_logs row when the
// request presented a known key (revoked keys included in "unknown"). The handlers authenticate
// themselves (useKey), so that /api/whitelist/check can pipeline the key
// look-up with its own query in one round trip.
func (s *Service) APIKeyRoute() fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		if err := c.Next(); err != nil {
			if herr := c.App().ErrorHandler(c, err); herr != nil {
				_ = c.SendStatus(fiber.StatusInternalServerError)
			}
		}
		if keyUseOf(c).KeyID == "" {
			// No known key: the refusal was counted (server.Refuse) and
			// leaves no row, so junk keys cannot fill the table.
			return nil
		}
		s.logs.Add(c.UserContext(), store.RequestLog{
			RequestID: server.RequestID(c),
			APIKeyID:  keyUseOf(c).KeyID,
			Method:    utils.CopyString(c.Method()), // Fiber's method string points into the request buffer
			Path:      utils.CopyString(c.Path()),
			Status:    c.Response().StatusCode(),
			Latency:   time.Since(start),
			IP:        server.ClientIP(c),
			At:        time.Now(),
		})
		return nil
	}
}

// keyHash reads X-API-Key and returns its keyed hash. A missing or
// malformed key is 401 without a database round trip, counted as a refusal
// (server.Refuse); an address past its refusal limit gets 429 before its
// key is looked up.
func (s *Service) keyHash(c *fiber.Ctx) ([]byte, error) {
	raw := c.Get(headerAPIKey)
	if raw == "" {
		return nil, server.Refuse(c, "api_key_missing", vectabase.Errorf(vectabase.EUNAUTHORIZED, "X-API-Key header is required"))
	}
	if !wellFormedKey(raw) {
		return nil, server.Refuse(c, "api_key_malformed", errBadKey)
	}
	if err := server.RefusalGate(c); err != nil {
		return nil, err
	}
	return s.kr.MAC("api_key", []byte(raw))
}

var errBadKey = vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid or revoked API key")

// useKey authenticates X-API-Key and counts the request against the key's
// per-minute limit.
func (s *Service) useKey(c *fiber.Ctx, scope string) (store.KeyUse, error) {
	hash, err := s.keyHash(c)
	if err != nil {
		return store.KeyUse{}, err
	}
	u, err := s.repo.UseAPIKey(c.UserContext(), hash)
	return u, s.admit(c, u, err, scope)
}

// admit acts on a key look-up: unknown and revoked keys get 401, a key over
// its limit 429 with Retry-After, a key without scope (when scope is not
// "") 403. Every response for a known key carries the X-RateLimit headers.
func (s *Service) admit(c *fiber.Ctx, u store.KeyUse, err error, scope string) error {
	if errors.Is(err, store.ErrNotFound) {
		return server.Refuse(c, "api_key_unknown", errBadKey)
	}
	if err != nil {
		return err
	}
	u.Limit = s.plans.Effective(u.Limit, u.Sub, u.Now)
	c.Locals(localKeyUse, u)
	server.SetActor(c, server.Actor{Type: "api_key", ID: u.KeyID})
	c.Set("X-RateLimit-Limit", strconv.Itoa(u.Limit))
	c.Set("X-RateLimit-Remaining", strconv.Itoa(u.Remaining()))
	c.Set("X-RateLimit-Reset", strconv.FormatInt(u.ResetAt.Unix(), 10))
	if !u.Allowed() {
		s.rejected.Inc()
		wait := int(u.ResetAt.Sub(u.Now).Seconds() + 0.999)
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(wait, 1)))
		return vectabase.Errorf(vectabase.ERATELIMITED, "rate limit of %d requests per minute reached", u.Limit)
	}
	if scope != "" && !slices.Contains(u.Scopes, scope) {
		return vectabase.Errorf(vectabase.EFORBIDDEN, "API key lacks scope %s", scope)
	}
	return nil
}

// checkBodySize refuses bodies over tinyBody on the API-key routes.
func checkBodySize(c *fiber.Ctx) error {
	if len(c.Body()) > tinyBody {
		return vectabase.Errorf(vectabase.EPAYLOADTOOLARGE, "request body is larger than %d bytes", tinyBody)
	}
	return nil
}

// VerifyResult is the body of POST /api/developer/verify.
type VerifyResult struct {
	Valid       bool      `json:"valid"`
	KeyID       string    `json:"keyId"`
	DeveloperID string    `json:"developerId"`
	Scopes      []string  `json:"scopes"`
	RateLimit   RateLimit `json:"rateLimit"`
}

// RateLimit is the state of a key's current window.
type RateLimit struct {
	Limit     int       `json:"limit"`
	Remaining int       `json:"remaining"`
	ResetAt   time.Time `json:"resetAt"`
}

// verifyBody is the body of verify: an empty object (or none).
type verifyBody struct{}

func (s *Service) handleVerify(c *fiber.Ctx) error {
	u, err := s.useKey(c, "")
	if err != nil {
		return err
	}
	if err := checkBodySize(c); err != nil {
		return err
	}
	if len(c.Body()) > 0 {
		var in verifyBody
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
	}
	scopes := u.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return c.JSON(VerifyResult{Valid: true, KeyID: u.KeyID, DeveloperID: u.DeveloperID, Scopes: scopes,
		RateLimit: RateLimit{Limit: u.Limit, Remaining: u.Remaining(), ResetAt: u.ResetAt.UTC()}})
}

// CheckInput is the body of POST /api/whitelist/check: licenseKey, or
// robloxUserId with systemId (a whitelist system) or productId (a developer
// product); hwid, optional, is the player's hardware id, compared with a
// license bound to one.
type CheckInput struct {
	SystemID     *string   `json:"systemId"`
	ProductID    *string   `json:"productId"`
	RobloxUserID *RobloxID `json:"robloxUserId"`
	LicenseKey   *string   `json:"licenseKey"`
	HWID         *string   `json:"hwid"`
}

// CheckResult is the answer of POST /api/whitelist/check. Reason, only when
// whitelisted is false, says why: not_found, revoked, expired, inactive
// (the whitelist system is switched off) or hwid_mismatch.
type CheckResult struct {
	Whitelisted bool       `json:"whitelisted"`
	ExpiresAt   *time.Time `json:"expiresAt"`
	Reason      string     `json:"reason,omitempty"`
}

// maxHWIDLen bounds a reported hardware id.
const maxHWIDLen = 256

// query validates a check body into a store query.
func (s *Service) query(in CheckInput) (store.CheckQuery, error) {
	q, err := s.target(in)
	if err != nil || in.HWID == nil {
		return q, err
	}
	if *in.HWID == "" || len(*in.HWID) > maxHWIDLen || !utf8.ValidString(*in.HWID) {
		return store.CheckQuery{}, invalid("hwid", "must be 1 to 256 bytes of text")
	}
	return q, s.repo.SetHWID(&q, *in.HWID)
}

// target validates which license a check asks about.
func (s *Service) target(in CheckInput) (store.CheckQuery, error) {
	switch {
	case in.LicenseKey != nil:
		if in.SystemID != nil || in.ProductID != nil || in.RobloxUserID != nil {
			return store.CheckQuery{}, invalid("licenseKey", "give either licenseKey or robloxUserId with systemId or productId, not both")
		}
		key := normalizeLicenseKey(*in.LicenseKey)
		if key == "" || len(key) > 128 {
			return store.CheckQuery{}, invalid("licenseKey", "must be a license key")
		}
		return s.repo.KeyCheck(key)
	case in.SystemID != nil || in.ProductID != nil || in.RobloxUserID != nil:
		if in.SystemID != nil && in.ProductID != nil {
			return store.CheckQuery{}, invalid("productId", "give systemId or productId, not both")
		}
		if in.SystemID == nil && in.ProductID == nil {
			return store.CheckQuery{}, invalid("systemId", "give systemId or productId with robloxUserId")
		}
		if err := required("robloxUserId", in.RobloxUserID); err != nil {
			return store.CheckQuery{}, err
		}
		if err := checkPositive64("robloxUserId", in.RobloxUserID.int64Ptr()); err != nil {
			return store.CheckQuery{}, err
		}
		q := store.CheckQuery{RobloxUserID: int64(*in.RobloxUserID)}
		var err error
		if in.SystemID != nil {
			q.SystemID, err = parseUUID("systemId", *in.SystemID)
		} else {
			q.ProductID, err = parseUUID("productId", *in.ProductID)
		}
		return q, err
	}
	return store.CheckQuery{}, invalid("systemId", "give systemId or productId and robloxUserId, or licenseKey")
}

// handleCheck answers a license check over the licenses the key may see
// (store.Marketplace.UseAPIKeyAndCheck). The key look-up, its rate-limit count and the check travel in
// one statement, shared by concurrent checks with the same key; the answer
// is shown only once the key is admitted. A bad
// body is still refused after the key (401 and 429 come first).
func (s *Service) handleCheck(c *fiber.Ctx) error {
	hash, err := s.keyHash(c)
	if err != nil {
		return err
	}
	var in CheckInput
	q, bad := store.CheckQuery{}, checkBodySize(c)
	if bad == nil {
		bad = server.DecodeJSON(c, &in)
	}
	if bad == nil {
		q, bad = s.query(in)
	}
	if bad != nil {
		u, err := s.repo.UseAPIKey(c.UserContext(), hash)
		if err := s.admit(c, u, err, ScopeWLRead); err != nil {
			return err
		}
		return bad
	}
	u, r, err := s.repo.UseAPIKeyAndCheck(c.UserContext(), hash, q)
	if err := s.admit(c, u, err, ScopeWLRead); err != nil {
		return err
	}
	out := CheckResult{Whitelisted: r.Whitelisted, ExpiresAt: r.ExpiresAt}
	if !r.Whitelisted {
		out.Reason = r.Reason
	}
	if out.ExpiresAt != nil {
		t := out.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return c.JSON(out)
}

func (s *Service) handleCreateKey(a Auth) fiber.Handler {
	return withBody(fiber.StatusCreated, nil, func(c *fiber.Ctx, _ []string, in APIKeyInput) (APIKeyResource, error) {
		return s.createAPIKey(c.UserContext(), keyActor(c, a), in)
	})
}

func (s *Service) handleListKeys(a Auth) fiber.Handler {
	return listing(nil, func(c *fiber.Ctx, _ []string, p store.Page) ([]store.APIKey, *store.Cursor, error) {
		return s.repo.ListAPIKeys(c.UserContext(), a.UserID(c), p)
	}, apiKeyResource)
}

func (s *Service) handleGetKey(a Auth) fiber.Handler {
	return withIDs([]string{"id"}, func(c *fiber.Ctx, id []string) (APIKeyResource, error) {
		k, err := s.repo.GetAPIKey(c.UserContext(), a.UserID(c), id[0])
		if err == nil && k.RevokedAt != nil {
			err = store.ErrNotFound // a revoked key is gone for its owner too
		}
		if err != nil {
			return APIKeyResource{}, mapErr(err, "API key")
		}
		return apiKeyResource(k), nil
	})
}

func (s *Service) handleUpdateKey(a Auth) fiber.Handler {
	return withBody(fiber.StatusOK, []string{"id"}, func(c *fiber.Ctx, id []string, in APIKeyInput) (APIKeyResource, error) {
		return s.updateAPIKey(c.UserContext(), keyActor(c, a), id[0], in)
	})
}

func (s *Service) handleDeleteKey(a Auth) fiber.Handler {
	return deleting([]string{"id"}, func(c *fiber.Ctx, id []string) error {
		return s.RevokeAPIKey(c.UserContext(), keyActor(c, a), id[0])
	})
}
