package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
)

// publishedKeys is how many signing keys the JWKS publishes and the
// verifier accepts: the current one and the one before it, so tokens signed
// just before a rotation stay valid until they expire.
const publishedKeys = 2

// tokenLeeway absorbs clock skew between instances and verifiers.
const tokenLeeway = 30 * time.Second

// tokenTypeAccess is the "type" claim of access tokens; refresh tokens are
// opaque random strings, but any JWT whose type is not "access" is refused.
const tokenTypeAccess = "access"

// Claims are an access token's claims: the registered ones plus the user's
// email, the token type and the session (sid) it was issued for.
type Claims struct {
	jwt.Claims
	Email     string `json:"email,omitempty"`
	Type      string `json:"type"`
	SessionID string `json:"sid,omitempty"`
}

// signingKey is one Ed25519 key: priv is nil for keys this instance only
// verifies with.
type signingKey struct {
	id   string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

// keySet holds the current and previous signing keys, reloaded from the
// database now and then so that a rotation by another instance is seen.
type keySet struct {
	db     *store.DB
	kr     *keyring.Keyring
	reload time.Duration
	now    func() time.Time

	mu       sync.RWMutex
	keys     []signingKey // newest first; keys[0] signs
	signer   jose.Signer
	loadedAt time.Time
	loading  sync.Mutex

	verified *verifiedCache
}

func signingKeyLocation(id string) keyring.Location {
	return keyring.Location{Table: "jwt_signing_keys", Column: "private_key", RowID: id}
}

// errNoSigningKey: the table holds no signing key (New creates the first).
var errNoSigningKey = errors.New("auth: no signing key")

func newKeySet(ctx context.Context, db *store.DB, kr *keyring.Keyring, reload time.Duration, now func() time.Time) (*keySet, error) {
	ks := &keySet{db: db, kr: kr, reload: reload, now: now, verified: newVerifiedCache(verifiedCacheSize)}
	if _, err := ks.create(ctx, true); err != nil {
		return nil, err
	}
	if err := ks.load(ctx); err != nil {
		return nil, err
	}
	return ks, nil
}

// sealedKey makes a new Ed25519 key and its id, the private key (seed)
// encrypted by the keyring and bound to the row it will be stored in.
func (ks *keySet) sealedKey(ctx context.Context) (id string, pub ed25519.PublicKey, sealed []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, nil, fmt.Errorf("auth: generate signing key: %w", err)
	}
	id = uuid.NewString()
	sealed, err = ks.kr.Encrypt(ctx, signingKeyLocation(id), priv.Seed())
	if err != nil {
		return "", nil, nil, fmt.Errorf("auth: encrypt signing key: %w", err)
	}
	return id, pub, sealed, nil
}

// create stores a new signing key; with onlyIfNone, only when there is no
// key yet. It returns the new kid, or "" when it added none.
func (ks *keySet) create(ctx context.Context, onlyIfNone bool) (string, error) {
	id, pub, sealed, err := ks.sealedKey(ctx)
	if err != nil {
		return "", err
	}
	added, err := ks.db.AddSigningKey(ctx, id, pub, sealed, ks.now(), onlyIfNone)
	if err != nil {
		return "", fmt.Errorf("auth: store signing key: %w", err)
	}
	if !added {
		return "", nil
	}
	return id, nil
}

// load reads the newest keys and decrypts the newest one's private key.
func (ks *keySet) load(ctx context.Context) error {
	ks.loading.Lock()
	defer ks.loading.Unlock()
	rows, err := ks.db.SigningKeys(ctx, publishedKeys)
	if err != nil {
		return fmt.Errorf("auth: load signing keys: %w", err)
	}
	if len(rows) == 0 {
		return errNoSigningKey
	}
	ks.mu.RLock()
	old := ks.keys
	ks.mu.RUnlock()
	keys := make([]signingKey, 0, len(rows))
	for i, r := range rows {
		if len(r.PublicKey) != ed25519.PublicKeySize {
			return fmt.Errorf("auth: signing key %s: public key is %d bytes", r.ID, len(r.PublicKey))
		}
		k := signingKey{id: r.ID, pub: ed25519.PublicKey(r.PublicKey)}
		if i == 0 {
			// Keep an already decrypted key rather than asking the keyring again.
			for _, o := range old {
				if o.id == r.ID && o.priv != nil {
					k.priv = o.priv
				}
			}
			if k.priv == nil {
				seed, err := ks.kr.Decrypt(ctx, signingKeyLocation(r.ID), r.PrivateKey)
				if err != nil {
					return fmt.Errorf("auth: decrypt signing key %s: %w", r.ID, err)
				}
				if len(seed) != ed25519.SeedSize {
					return fmt.Errorf("auth: signing key %s: seed is %d bytes", r.ID, len(seed))
				}
				k.priv = ed25519.NewKeyFromSeed(seed)
				clear(seed)
				if !k.pub.Equal(k.priv.Public()) {
					return fmt.Errorf("auth: signing key %s: private key does not match its public key", r.ID)
				}
			}
		}
		keys = append(keys, k)
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.EdDSA,
		Key:       jose.JSONWebKey{Key: keys[0].priv, KeyID: keys[0].id, Algorithm: string(jose.EdDSA), Use: "sig"},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return fmt.Errorf("auth: signer: %w", err)
	}
	ks.mu.Lock()
	ks.keys, ks.signer, ks.loadedAt = keys, signer, time.Now()
	ks.mu.Unlock()
	return nil
}

// rotate adds a new signing key, which signs from now on; the previous one
// is still published and accepted.
func (ks *keySet) rotate(ctx context.Context) (string, error) {
	id, err := ks.create(ctx, false)
	if err != nil {
		return "", err
	}
	return id, ks.load(ctx)
}

// rotateIfOlder adds a new signing key when the newest was created before
// cutoff.
func (ks *keySet) rotateIfOlder(ctx context.Context, cutoff time.Time) (bool, error) {
	id, pub, sealed, err := ks.sealedKey(ctx)
	if err != nil {
		return false, err
	}
	added, err := ks.db.AddSigningKeyIfNewestBefore(ctx, id, pub, sealed, ks.now(), cutoff)
	if err != nil {
		return false, fmt.Errorf("auth: store signing key: %w", err)
	}
	if !added {
		return false, nil
	}
	return true, ks.load(ctx)
}

// refreshIfStale reloads the keys when they are older than the reload
// interval. A failed reload keeps the keys in hand: they are still valid.
func (ks *keySet) refreshIfStale(ctx context.Context) {
	ks.mu.RLock()
	stale := time.Since(ks.loadedAt) > ks.reload
	ks.mu.RUnlock()
	if stale && ks.loading.TryLock() {
		ks.loading.Unlock()
		_ = ks.load(ctx)
	}
}

func (ks *keySet) currentSigner() jose.Signer {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.signer
}

func (ks *keySet) publicKey(kid string) (ed25519.PublicKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.id == kid {
			return k.pub, true
		}
	}
	return nil, false
}

// JWKS returns the published public keys: current and previous.
func (ks *keySet) jwks() jose.JSONWebKeySet {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ks.keys))}
	for _, k := range ks.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.pub, KeyID: k.id, Algorithm: string(jose.EdDSA), Use: "sig"})
	}
	return set
}

// issueAccess signs an access token for a session. iat is the session's
// creation time (so a tolerated concurrent refresh gets the very same token:
// Ed25519 signatures are deterministic) and exp is iat + ttl.
func (ks *keySet) issueAccess(ctx context.Context, issuer string, ttl time.Duration, userID, email, sessionID string, iat time.Time) (string, error) {
	ks.refreshIfStale(ctx)
	iat = iat.Truncate(time.Second)
	c := Claims{
		Claims: jwt.Claims{
			Issuer:    issuer,
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(iat),
			NotBefore: jwt.NewNumericDate(iat),
			Expiry:    jwt.NewNumericDate(iat.Add(ttl)),
		},
		Email:     email,
		Type:      tokenTypeAccess,
		SessionID: sessionID,
	}
	// Sign the marshalled claims directly: jwt.Signed's builder would
	// round-trip them through a map first, which costs on every refresh.
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("auth: access token claims: %w", err)
	}
	obj, err := ks.currentSigner().Sign(payload)
	if err != nil {
		return "", fmt.Errorf("auth: sign access token: %w", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("auth: sign access token: %w", err)
	}
	return tok, nil
}

// errBadToken is what every token failure becomes: the client learns only
// that the token is not valid.
var errBadToken = errors.New("auth: invalid token")

// verifyAccess checks an access token: EdDSA only (the algorithm is pinned,
// so "none" and HMAC confusion are refused by the parser), a kid naming a
// published key, a valid signature, the issuer, exp/nbf/iat against now, and
// type "access".
//
// A token verified before is found in the verified cache by its hash: its
// signature is not checked again, but its key must still be published and
// its claims are checked against now as on the first time.
func (ks *keySet) verifyAccess(ctx context.Context, raw, issuer string, now time.Time) (Claims, error) {
	var h [32]byte
	if ks.verified != nil {
		h = tokenHash(raw)
		if e, ok := ks.verified.get(h, now.Add(-tokenLeeway)); ok {
			if _, published := ks.publicKey(e.kid); published {
				return checkAccessClaims(e.claims, issuer, now)
			}
		}
	}
	c, kid, err := ks.verifyAccessSignature(ctx, raw)
	if err != nil {
		return c, err
	}
	if c, err = checkAccessClaims(c, issuer, now); err != nil {
		return c, err
	}
	if ks.verified != nil {
		ks.verified.put(h, verifiedEntry{kid: kid, claims: c, expiry: c.Expiry.Time()}, now.Add(-tokenLeeway))
	}
	return c, nil
}

// verifyAccessSignature parses the token and checks its signature against
// the published key its kid names; it returns the claims and the kid.
func (ks *keySet) verifyAccessSignature(ctx context.Context, raw string) (Claims, string, error) {
	var c Claims
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return c, "", errBadToken
	}
	kid := tok.Headers[0].KeyID
	pub, ok := ks.publicKey(kid)
	if !ok {
		// Another instance may have rotated: reload once, if not done lately.
		ks.mu.RLock()
		recent := time.Since(ks.loadedAt) < time.Second
		ks.mu.RUnlock()
		if kid == "" || recent {
			return c, "", errBadToken
		}
		if err := ks.load(ctx); err != nil {
			return c, "", errBadToken
		}
		if pub, ok = ks.publicKey(kid); !ok {
			return c, "", errBadToken
		}
	}
	if err := tok.Claims(pub, &c); err != nil {
		return c, "", errBadToken
	}
	return c, kid, nil
}

// checkAccessClaims checks what a signature does not: the type, the
// subject and times being there, the issuer, and exp/nbf/iat against now.
func checkAccessClaims(c Claims, issuer string, now time.Time) (Claims, error) {
	if c.Type != tokenTypeAccess || c.Subject == "" || c.Expiry == nil || c.IssuedAt == nil {
		return c, errBadToken
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Time: now}, tokenLeeway); err != nil {
		return c, errBadToken
	}
	return c, nil
}
