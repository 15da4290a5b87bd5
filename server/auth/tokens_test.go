package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
)

// accessClaims are the claims the contract promises in an access token.
type accessClaims struct {
	jwt.Claims
	Email string `json:"email"`
	Type  string `json:"type"`
	SID   string `json:"sid"`
}

// jwksVerify verifies tok with nothing but the published JWKS, as another
// service would: a separate go-jose verifier, EdDSA only.
func jwksVerify(t testing.TB, e *env, tok string) (accessClaims, error) {
	t.Helper()
	r := e.do("GET", "/.well-known/jwks.json", nil)
	if r.Status != 200 {
		t.Fatalf("GET jwks = %d %s, want 200", r.Status, r.Body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatalf("jwks %s: %v", r.Body, err)
	}
	var c accessClaims
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return c, err
	}
	if err := parsed.Claims(set, &c); err != nil {
		return c, err
	}
	return c, c.Claims.Validate(jwt.Expected{Issuer: "vectabase"})
}

func jwksKIDs(t testing.TB, e *env) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	e.do("GET", "/.well-known/jwks.json", nil).json(t, &set)
	var kids []string
	for _, k := range set.Keys {
		if _, ok := k.Key.(ed25519.PublicKey); !ok || k.Algorithm != "EdDSA" || !k.IsPublic() {
			t.Fatalf("jwks key %s is %T alg %q, want a public Ed25519 EdDSA key", k.KeyID, k.Key, k.Algorithm)
		}
		kids = append(kids, k.KeyID)
	}
	return kids
}

func kidOf(t testing.TB, tok string) string {
	t.Helper()
	p, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	return p.Headers[0].KeyID
}

// A token verifies with the JWKS alone before a signing-key rotation, and
// both it and a token signed after the rotation verify with the JWKS
// after it (overlap); after a second rotation the oldest key is gone.
func TestTokenVerifiesWithJWKSAcrossRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	u := e.register("jwks@example.com", "password-123")
	before := e.login("jwks@example.com", "password-123").Token
	c, err := jwksVerify(t, e, before)
	if err != nil {
		t.Fatalf("verify with JWKS before rotation: %v", err)
	}
	if c.Subject != u.ID || c.Email != "jwks@example.com" || c.Type != "access" || c.Issuer != "vectabase" {
		t.Fatalf("claims = %+v, want sub %s, email, type access, iss vectabase", c, u.ID)
	}
	if kids := jwksKIDs(t, e); len(kids) != 1 {
		t.Fatalf("JWKS kids before rotation = %v, want one", kids)
	}
	oldKID := kidOf(t, before)

	newKID, err := e.svc.RotateSigningKey(context.Background())
	if err != nil {
		t.Fatalf("RotateSigningKey err = %v, want nil", err)
	}
	after := e.login("jwks@example.com", "password-123").Token
	if kidOf(t, after) != newKID || newKID == oldKID {
		t.Fatalf("token after rotation has kid %s, want the new key %s", kidOf(t, after), newKID)
	}
	if kids := jwksKIDs(t, e); len(kids) != 2 || kids[0] != newKID || kids[1] != oldKID {
		t.Fatalf("JWKS kids after rotation = %v, want [%s %s]", kids, newKID, oldKID)
	}
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := jwksVerify(t, e, tok); err != nil {
			t.Errorf("verify %s-rotation token with JWKS after rotation: %v", name, err)
		}
		if r := e.do("GET", "/api/auth/me", nil, bearer(tok)...); r.Status != 200 {
			t.Errorf("me with %s-rotation token = %d, want 200", name, r.Status)
		}
	}

	if _, err := e.svc.RotateSigningKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := jwksVerify(t, e, before); err == nil {
		t.Error("a token of a key two rotations old still verifies with the JWKS")
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(before)...); r.Status != 401 {
		t.Errorf("me with a token of a retired key = %d, want 401", r.Status)
	}
}

// Another instance on the same database picks up a rotation when it meets
// a token with the new kid.
func TestRotationSeenByAnotherInstance(t *testing.T) {
	t.Parallel()
	a := newEnv(t, testConfig())
	b := newEnvOn(t, a.db, a.kr, testConfig())
	a.register("two@example.com", "password-123")
	if _, err := a.svc.RotateSigningKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok := a.login("two@example.com", "password-123").Token
	time.Sleep(1100 * time.Millisecond) // b reloads on an unknown kid at most once a second
	if r := b.do("GET", "/api/auth/me", nil, bearer(tok)...); r.Status != 200 {
		t.Fatalf("instance b: me with a token of a key rotated on a = %d %s, want 200", r.Status, r.Body)
	}
}

// The private signing key is stored only as keyring ciphertext bound to its row.
func TestSigningKeyStoredEncrypted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	var id string
	var pub, priv []byte
	err := e.db.Pool.QueryRow(context.Background(), `SELECT id, public_key, private_key FROM jwt_signing_keys`).Scan(&id, &pub, &priv)
	if err != nil {
		t.Fatal(err)
	}
	loc := keyring.Location{Table: "jwt_signing_keys", Column: "private_key", RowID: id}
	seed, err := e.kr.Decrypt(context.Background(), loc, priv)
	if err != nil {
		t.Fatalf("Decrypt(private_key, %v) err = %v, want nil", loc, err)
	}
	if strings.Contains(string(priv), string(seed)) {
		t.Error("private_key column contains the seed in the clear")
	}
	if !ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(pub)) {
		t.Error("decrypted seed does not match the stored public key")
	}
	other := keyring.Location{Table: "jwt_signing_keys", Column: "private_key", RowID: "00000000-0000-0000-0000-000000000000"}
	if _, err := e.kr.Decrypt(context.Background(), other, priv); err == nil {
		t.Error("private key ciphertext decrypts for another row")
	}
}

// serverKey returns the server's current signing key, read the way only a
// test may: decrypting the row with the keyring.
func serverKey(t testing.TB, e *env) (string, ed25519.PrivateKey) {
	t.Helper()
	var id string
	var priv []byte
	err := e.db.Pool.QueryRow(context.Background(), `SELECT id, private_key FROM jwt_signing_keys ORDER BY created_at DESC LIMIT 1`).Scan(&id, &priv)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := e.kr.Decrypt(context.Background(), keyring.Location{Table: "jwt_signing_keys", Column: "private_key", RowID: id}, priv)
	if err != nil {
		t.Fatal(err)
	}
	return id, ed25519.NewKeyFromSeed(seed)
}

func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestProperty6_TokenLifetime claims: for any configured access lifetime,
// an issued token's exp - iat equals it (and expiresIn says the same), for
// tokens from login and from refresh.
func TestProperty6_TokenLifetime(t *testing.T) {
	t.Parallel()
	base := newEnv(t, testConfig())
	base.register("p6@example.com", "password-123")
	rapid.Check(t, func(rt *rapid.T) {
		secs := rapid.OneOf(rapid.Int64Range(1, 120), rapid.Int64Range(121, 10*365*24*3600)).Draw(rt, "seconds")
		cfg := testConfig()
		cfg.AccessTTL = time.Duration(secs) * time.Second
		e := newEnvOn(t, base.db, base.kr, cfg)
		e.t = rt
		lr := e.login("p6@example.com", "password-123")
		r := e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": lr.RefreshToken})
		var rr loginBody
		r.json(rt, &rr)
		for name, res := range map[string]loginBody{"login": lr, "refresh": rr} {
			var c accessClaims
			p, err := jwt.ParseSigned(res.Token, []jose.SignatureAlgorithm{jose.EdDSA})
			if err != nil {
				rt.Fatalf("%s token: %v", name, err)
			}
			if err := p.UnsafeClaimsWithoutVerification(&c); err != nil {
				rt.Fatal(err)
			}
			if c.Expiry == nil || c.IssuedAt == nil {
				rt.Fatalf("%s token lacks exp or iat", name)
			}
			if got := int64(*c.Expiry) - int64(*c.IssuedAt); got != secs {
				rt.Fatalf("%s token exp - iat = %d, want the configured %d", name, got, secs)
			}
			if res.ExpiresIn != secs {
				rt.Fatalf("%s expiresIn = %d, want %d", name, res.ExpiresIn, secs)
			}
		}
	})
}

// TestProperty8_BadTokensGet401 claims: any invalid, tampered, expired,
// not-yet-valid, wrongly signed, alg-none, wrong-issuer, refresh-as-access,
// revoked-session or otherwise malformed bearer token gets 401 UNAUTHORIZED
// from every protected route (/api/auth/me, /api/auth/logout), and never
// changes anything.
func TestProperty8_BadTokensGet401(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	u := e.register("p8@example.com", "password-123")
	good := e.login("p8@example.com", "password-123")
	kid, key := serverKey(t, e)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	var sid string
	{
		var c accessClaims
		p, _ := jwt.ParseSigned(good.Token, []jose.SignatureAlgorithm{jose.EdDSA})
		_ = p.UnsafeClaimsWithoutVerification(&c)
		sid = c.SID
	}
	// A session of the same user that has been logged out.
	revoked := e.login("p8@example.com", "password-123")
	if r := e.do("POST", "/api/auth/logout", nil, bearer(revoked.Token)...); r.Status != 204 {
		t.Fatalf("logout = %d", r.Status)
	}
	now := time.Now()
	claims := func(mod func(*accessClaims)) accessClaims {
		c := accessClaims{Claims: jwt.Claims{Issuer: "vectabase", Subject: u.ID,
			IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(time.Hour))},
			Email: "p8@example.com", Type: "access", SID: sid}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	// The control: a token the test signs with the server's key and valid
	// claims is accepted, so the refusals below are about what was changed.
	if r := e.do("GET", "/api/auth/me", nil, bearer(sign(t, jose.EdDSA, key, kid, claims(nil)))...); r.Status != 200 {
		t.Fatalf("control token = %d %s, want 200", r.Status, r.Body)
	}
	b64 := base64.RawURLEncoding
	noneToken := func(c accessClaims) string {
		h := b64.EncodeToString([]byte(`{"alg":"none","kid":"` + kid + `","typ":"JWT"}`))
		p, _ := json.Marshal(c)
		return h + "." + b64.EncodeToString(p) + "."
	}
	kinds := map[string]func(*rapid.T) string{
		"empty":                   func(*rapid.T) string { return "" },
		"garbage":                 func(rt *rapid.T) string { return rapid.StringN(0, 300, -1).Draw(rt, "garbage") },
		"refresh-token-as-access": func(*rapid.T) string { return good.RefreshToken },
		"tampered": func(rt *rapid.T) string {
			b := []byte(good.Token)
			i := rapid.IntRange(0, len(b)-2).Draw(rt, "pos")
			c := rapid.ByteRange('-', 'z').Draw(rt, "char")
			// The last character of a base64 segment carries unused bits
			// that a lenient decoder ignores: change it only by dropping it.
			if b[i] == c || b[i] == '.' || c == '.' || b[i+1] == '.' {
				// A same-character or separator swap is not a tamper: drop the byte instead.
				return string(b[:i]) + string(b[i+1:])
			}
			b[i] = c
			return string(b)
		},
		"payload-swapped": func(*rapid.T) string {
			parts := strings.Split(good.Token, ".")
			p, _ := json.Marshal(claims(func(c *accessClaims) { c.Subject = "00000000-0000-0000-0000-000000000001" }))
			return parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
		},
		"alg-none":  func(*rapid.T) string { return noneToken(claims(nil)) },
		"wrong-key": func(*rapid.T) string { return sign(t, jose.EdDSA, otherKey, kid, claims(nil)) },
		"hmac-with-public-key": func(*rapid.T) string {
			return sign(t, jose.HS256, []byte(key.Public().(ed25519.PublicKey)), kid, claims(nil))
		},
		"unknown-kid": func(*rapid.T) string { return sign(t, jose.EdDSA, key, "no-such-kid", claims(nil)) },
		"expired": func(rt *rapid.T) string {
			ago := time.Duration(rapid.IntRange(31, 100000).Draw(rt, "secondsAgo")) * time.Second
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) {
				c.IssuedAt = jwt.NewNumericDate(now.Add(-ago - time.Hour))
				c.Expiry = jwt.NewNumericDate(now.Add(-ago))
			}))
		},
		"not-yet-valid": func(rt *rapid.T) string {
			ahead := time.Duration(rapid.IntRange(120, 100000).Draw(rt, "secondsAhead")) * time.Second
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) {
				c.NotBefore = jwt.NewNumericDate(now.Add(ahead))
			}))
		},
		"issued-in-future": func(rt *rapid.T) string {
			ahead := time.Duration(rapid.IntRange(120, 100000).Draw(rt, "secondsAhead")) * time.Second
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(ahead)) }))
		},
		"type-refresh": func(*rapid.T) string {
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.Type = "refresh" }))
		},
		"no-type": func(*rapid.T) string {
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.Type = "" }))
		},
		"wrong-issuer": func(*rapid.T) string {
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.Issuer = "someone-else" }))
		},
		"no-expiry": func(*rapid.T) string {
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.Expiry = nil }))
		},
		"other-users-session": func(*rapid.T) string {
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.Subject = "00000000-0000-0000-0000-000000000001" }))
		},
		"no-session": func(*rapid.T) string {
			return sign(t, jose.EdDSA, key, kid, claims(func(c *accessClaims) { c.SID = "" }))
		},
		"revoked-session": func(*rapid.T) string { return revoked.Token },
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	rapid.Check(t, func(rt *rapid.T) {
		kind := rapid.SampledFrom(names).Draw(rt, "kind")
		tok := kinds[kind](rt)
		scheme := rapid.SampledFrom([]string{"Bearer ", "bearer ", "Bearer  "}).Draw(rt, "scheme")
		for _, route := range [][2]string{{"GET", "/api/auth/me"}, {"POST", "/api/auth/logout"}} {
			e.t = rt
			r := e.do(route[0], route[1], nil, "Authorization", scheme+tok)
			if r.Status != 401 || r.code() != "UNAUTHORIZED" {
				rt.Fatalf("%s %s with %s token = %d %s, want 401 UNAUTHORIZED", route[0], route[1], kind, r.Status, r.Body)
			}
		}
	})
	e.t = t
	// Nothing above logged the good session out.
	if r := e.do("GET", "/api/auth/me", nil, bearer(good.Token)...); r.Status != 200 {
		t.Fatalf("me with the good token after the bad ones = %d, want 200", r.Status)
	}
}

// Scheduled rotation makes one new key once the newest is old enough, never
// more often than tokens live, and tokens of the previous key still work.
func TestScheduledSigningKeyRotation(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AccessTTL = time.Minute
	cfg.SigningKeyRotateEvery = time.Second // raised to more than the token lifetime
	e := newEnv(t, cfg)
	e.register("sched@example.com", "password-123")
	before := e.login("sched@example.com", "password-123").Token
	ctx := context.Background()
	if rotated, err := e.svc.RotateSigningKeyIfDue(ctx); err != nil || rotated {
		t.Fatalf("RotateSigningKeyIfDue on a new key = %v, %v, want false", rotated, err)
	}
	e.clock.advance(time.Minute) // past 1 s, short of the token lifetime plus margins
	if rotated, _ := e.svc.RotateSigningKeyIfDue(ctx); rotated {
		t.Fatal("rotated sooner than the access-token lifetime")
	}
	e.clock.advance(5 * time.Minute)
	if rotated, err := e.svc.RotateSigningKeyIfDue(ctx); err != nil || !rotated {
		t.Fatalf("RotateSigningKeyIfDue when due = %v, %v, want true", rotated, err)
	}
	if rotated, _ := e.svc.RotateSigningKeyIfDue(ctx); rotated {
		t.Fatal("rotated twice in a row")
	}
	after := e.login("sched@example.com", "password-123").Token
	if kidOf(t, before) == kidOf(t, after) {
		t.Fatal("token after scheduled rotation has the old kid")
	}
	if kids := jwksKIDs(t, e); len(kids) != 2 {
		t.Errorf("JWKS after a scheduled rotation has %d keys, want 2", len(kids))
	}
}
