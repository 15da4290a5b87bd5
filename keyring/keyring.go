// Package keyring is Vectabase's envelope encryption: data keys (DEKs) live in
// Tink keysets held in memory, and those keysets are persisted only wrapped by
// a key-encryption key (KEK). Every field ciphertext is bound to where it lives
// (table, column, row id) through AEAD associated data, and carries Tink's
// 5-byte prefix naming the key that made it, so keys can rotate.
//
// The package never touches the database or HTTP: persistence goes through
// the Store interface (implemented in package store), and KEK backends live
// in subpackages (keyring/local, keyring/hcvault), one file each.
package keyring

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// KEK wraps and unwraps serialized keysets. It is called only when keysets
// are loaded, created or re-wrapped, never per data operation. Decrypt must
// fail when the ciphertext or the associated data was altered.
type KEK interface {
	Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error)
}

// KEKDescriber is implemented by KEKs that can name themselves for status
// output and for the kek_backend / kek_key_id columns. Neither value may
// reveal key material.
type KEKDescriber interface {
	// KEKBackend names the backend, e.g. "local" or "vault".
	KEKBackend() string
	// KEKKeyID identifies the wrapping key, e.g. a check value of a local
	// key or a transit key path.
	KEKKeyID() string
}

// Keyset names and purposes. The data keyset holds the AES-256-GCM DEKs; the
// index and mac keysets hold HMAC-SHA256 PRF keys that never rotate, because
// their outputs are looked up by equality.
const (
	KeysetData  = "data"
	KeysetIndex = "index"
	KeysetMAC   = "mac"

	PurposeAEAD = "aead"
	PurposePRF  = "prf"
)

// Errors returned by the keyring. Match them with errors.Is.
var (
	// ErrDecrypt is wrapped by Decrypt when a ciphertext does not
	// authenticate: tampered, truncated, moved to another place, or made by
	// a key the keyring does not hold.
	ErrDecrypt = errors.New("ciphertext does not authenticate")
	// ErrUnwrap is wrapped when the KEK cannot unwrap a stored keyset: the
	// wrong master key, passphrase or Vault key.
	ErrUnwrap = errors.New("wrong master key or passphrase")
	// ErrConflict is returned by a Store when a keyset was changed by
	// someone else since it was read (optimistic version check).
	ErrConflict = errors.New("keyset changed concurrently")
	// ErrNotFound is returned by a Store for a missing keyset or meta value.
	ErrNotFound = errors.New("not found")
	// ErrUnknownKey is returned by DestroyKey for a key id not in the data
	// keyset, and by KeyIDOf for a ciphertext without a Tink prefix.
	ErrUnknownKey = errors.New("unknown key id")
	// ErrKEKUnavailable is wrapped by a KEK whose service (Vault, a KMS) is
	// sealed, down or unreachable: the call may work later, so the API
	// answers 503 UNAVAILABLE rather than 500.
	ErrKEKUnavailable = errors.New("the key-encryption key service is unavailable")
)

// Location is where a ciphertext lives; it is the associated data, so a
// ciphertext copied to another table, column or row does not decrypt.
type Location struct {
	Table, Column, RowID string
}

func (l Location) String() string { return l.Table + "." + l.Column + " row " + l.RowID }

// StoredKeyset is one wrapped keyset as persisted. Wrapped is a Tink
// EncryptedKeyset (binary) whose ciphertext was made by the KEK; it holds no
// key in the clear.
type StoredKeyset struct {
	Name       string
	Purpose    string
	Wrapped    []byte
	KEKBackend string
	KEKKeyID   string
	// Version increments on every update; updates check it (optimistic
	// concurrency), so two instances rotating at once cannot lose a key.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store persists wrapped keysets and small keyring metadata (the passphrase
// salt). It is implemented on PostgreSQL by store.Keysets.
type Store interface {
	// Keysets returns every stored keyset, in no particular order.
	Keysets(ctx context.Context) ([]StoredKeyset, error)
	// CreateKeyset stores ks unless a keyset of that name exists, and
	// returns the keyset now stored under the name: ks, or the one another
	// instance created first. Version of a new keyset is 1.
	CreateKeyset(ctx context.Context, ks StoredKeyset) (StoredKeyset, error)
	// UpdateKeysets replaces each given keyset, all or nothing, when its
	// stored version still equals the given Version; the stored version
	// becomes Version+1. It returns an error wrapping ErrConflict when a
	// version differs and ErrNotFound when a keyset is missing.
	UpdateKeysets(ctx context.Context, kss []StoredKeyset) error
	// GetOrCreateMeta returns the value stored under name, storing value
	// first when there is none. Concurrent callers all get the same value.
	GetOrCreateMeta(ctx context.Context, name string, value []byte) ([]byte, error)
}

// Keyring encrypts and decrypts fields, computes blind indexes and keyed
// hashes, and manages the keysets behind them. It is safe for concurrent use.
type Keyring struct {
	st      Store
	kek     atomic.Pointer[kekBox]
	state   atomic.Pointer[state]
	mu      sync.Mutex // serialises Reload, rotations and key destruction
	metrics *metrics
	// personal caches users' parsed personal keysets (personal.go).
	personal *personalCache
}

type kekBox struct{ KEK }

// state is an immutable snapshot of the loaded keysets; Reload and rotations
// swap in a new one atomically so data operations never take a lock.
type state struct {
	handles   map[string]*keyset.Handle
	primary   tink.AEAD
	primaryID uint32
	// byID holds one Tink AES-GCM primitive per enabled data key, so
	// Decrypt goes straight to the key named in the ciphertext's prefix.
	byID   map[uint32]tink.AEAD
	index  *prf.Set
	mac    *prf.Set
	stored map[string]StoredKeyset
}

// Option configures Open.
type Option func(*options)

type options struct {
	registerer  prometheus.Registerer
	personalTTL time.Duration
	personalMax int
}

// WithRegisterer counts keyring operations as vectabase_keyring_ops_total
// {op,result} on reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

var keysetSpecs = []struct{ name, purpose string }{
	{KeysetData, PurposeAEAD},
	{KeysetIndex, PurposePRF},
	{KeysetMAC, PurposePRF},
}

// Open loads the keysets from st and unwraps them with kek, creating any
// missing keyset on first start. Two instances opening an empty store at the
// same moment end up with one keyset per name: each creates its own, the
// store keeps the first, and both use what the store kept.
//
// A KEK that cannot unwrap a stored keyset gives an error wrapping ErrUnwrap
// that names the keyset and no key material.
func Open(ctx context.Context, st Store, kek KEK, opts ...Option) (*Keyring, error) {
	if st == nil || kek == nil {
		return nil, errors.New("keyring: Open needs a store and a KEK")
	}
	o := options{personalTTL: DefaultPersonalKeyTTL, personalMax: DefaultPersonalKeyEntries}
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	k := &Keyring{st: st, metrics: m, personal: newPersonalCache(o.personalTTL, o.personalMax)}
	k.kek.Store(&kekBox{kek})

	stored, err := st.Keysets(ctx)
	if err != nil {
		return nil, fmt.Errorf("keyring: load keysets: %w", err)
	}
	have := make(map[string]bool, len(stored))
	for _, s := range stored {
		have[s.Name] = true
	}
	if len(stored) > 0 && len(stored) < len(keysetSpecs) {
		// A start that crashed between creating keysets: make sure this
		// KEK is the one that wrapped the others before adding any under it.
		if _, err := unwrap(ctx, kek, stored[0]); err != nil {
			return nil, err
		}
	}
	created := false
	for _, spec := range keysetSpecs {
		if have[spec.name] {
			continue
		}
		if _, err := k.createKeyset(ctx, spec.name, spec.purpose); err != nil {
			return nil, err
		}
		created = true
	}
	if created {
		if stored, err = st.Keysets(ctx); err != nil {
			return nil, fmt.Errorf("keyring: load keysets: %w", err)
		}
	}
	s, err := k.unwrapAll(ctx, kek, stored)
	if err != nil {
		k.metrics.ops.WithLabelValues("open", "error").Inc()
		return nil, err
	}
	k.state.Store(s)
	k.metrics.ops.WithLabelValues("open", "ok").Inc()
	return k, nil
}

func templateFor(purpose string) (*tinkpb.KeyTemplate, error) {
	switch purpose {
	case PurposeAEAD:
		return aead.AES256GCMKeyTemplate(), nil
	case PurposePRF:
		return prf.HMACSHA256PRFKeyTemplate(), nil
	}
	return nil, fmt.Errorf("keyring: unknown keyset purpose %q", purpose)
}

func (k *Keyring) createKeyset(ctx context.Context, name, purpose string) (StoredKeyset, error) {
	tmpl, err := templateFor(purpose)
	if err != nil {
		return StoredKeyset{}, err
	}
	h, err := keyset.NewHandle(tmpl)
	if err != nil {
		return StoredKeyset{}, fmt.Errorf("keyring: new keyset %q: %w", name, err)
	}
	kek := k.kek.Load().KEK
	wrapped, err := wrap(ctx, kek, name, h)
	if err != nil {
		return StoredKeyset{}, err
	}
	backend, keyID := describe(kek)
	ks, err := k.st.CreateKeyset(ctx, StoredKeyset{
		Name: name, Purpose: purpose, Wrapped: wrapped,
		KEKBackend: backend, KEKKeyID: keyID, Version: 1,
	})
	if err != nil {
		return StoredKeyset{}, fmt.Errorf("keyring: store keyset %q: %w", name, err)
	}
	return ks, nil
}

func describe(kek KEK) (backend, keyID string) {
	if d, ok := kek.(KEKDescriber); ok {
		return d.KEKBackend(), d.KEKKeyID()
	}
	return fmt.Sprintf("%T", kek), ""
}

// keysetAAD binds a wrapped keyset to its name, so the index keyset cannot
// be swapped in for the data keyset in the database.
func keysetAAD(name string) []byte { return []byte("vectabase/keyring/keyset/" + name) }

// kekAEAD adapts a KEK to Tink's AEADWithContext for keyset.WriteWithContext
// and keyset.ReadWithContext. Tink flattens the KEK's error with %v, so the
// adapter keeps it, and the keyring can still tell "wrong key" (AuthError)
// from "KMS unreachable".
type kekAEAD struct {
	kek KEK
	err error
}

func (a *kekAEAD) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	ct, err := a.kek.Encrypt(ctx, pt, ad)
	a.err = err
	return ct, err
}

func (a *kekAEAD) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	pt, err := a.kek.Decrypt(ctx, ct, ad)
	a.err = err
	return pt, err
}

func wrap(ctx context.Context, kek KEK, name string, h *keyset.Handle) ([]byte, error) {
	var buf bytes.Buffer
	a := &kekAEAD{kek: kek}
	if err := h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), a, keysetAAD(name)); err != nil {
		if a.err != nil {
			err = a.err
		}
		return nil, fmt.Errorf("keyring: KEK cannot wrap keyset %q: %w", name, err)
	}
	return buf.Bytes(), nil
}

func unwrap(ctx context.Context, kek KEK, ks StoredKeyset) (*keyset.Handle, error) {
	a := &kekAEAD{kek: kek}
	h, err := keyset.ReadWithContext(ctx, keyset.NewBinaryReader(bytes.NewReader(ks.Wrapped)), a, keysetAAD(ks.Name))
	switch {
	case err == nil:
		return h, nil
	case a.err != nil && !isAuthFailure(a.err):
		return nil, fmt.Errorf("keyring: KEK cannot unwrap keyset %q: %w", ks.Name, a.err)
	case a.err != nil:
		return nil, fmt.Errorf("keyring: KEK cannot unwrap keyset %q: %w", ks.Name, ErrUnwrap)
	default:
		// The KEK returned bytes that are not a keyset: corrupted row.
		return nil, fmt.Errorf("keyring: keyset %q is corrupt: %w", ks.Name, err)
	}
}

// AuthError is implemented by KEK errors meaning "this key did not make
// this ciphertext", as opposed to "the KMS is unreachable". The keyring
// reports the former as ErrUnwrap.
type AuthError interface{ AuthFailure() bool }

func isAuthFailure(err error) bool {
	var ae AuthError
	return errors.As(err, &ae) && ae.AuthFailure()
}

func (k *Keyring) unwrapAll(ctx context.Context, kek KEK, stored []StoredKeyset) (*state, error) {
	byName := make(map[string]StoredKeyset, len(stored))
	for _, ks := range stored {
		byName[ks.Name] = ks
	}
	handles := make(map[string]*keyset.Handle, len(keysetSpecs))
	for _, spec := range keysetSpecs {
		ks, ok := byName[spec.name]
		if !ok {
			return nil, fmt.Errorf("keyring: keyset %q: %w", spec.name, ErrNotFound)
		}
		if ks.Purpose != spec.purpose {
			return nil, fmt.Errorf("keyring: keyset %q has purpose %q, want %q", ks.Name, ks.Purpose, spec.purpose)
		}
		h, err := unwrap(ctx, kek, ks)
		if err != nil {
			return nil, err
		}
		handles[spec.name] = h
	}
	return newState(handles, byName)
}

// newState builds the primitives for a set of unwrapped keysets.
func newState(handles map[string]*keyset.Handle, stored map[string]StoredKeyset) (*state, error) {
	s := &state{handles: handles, stored: stored}
	var err error
	if err := s.setData(handles[KeysetData]); err != nil {
		return nil, fmt.Errorf("keyring: keyset %q: %w", KeysetData, err)
	}
	if s.index, err = prf.NewPRFSet(handles[KeysetIndex]); err != nil {
		return nil, fmt.Errorf("keyring: keyset %q: %w", KeysetIndex, err)
	}
	if s.mac, err = prf.NewPRFSet(handles[KeysetMAC]); err != nil {
		return nil, fmt.Errorf("keyring: keyset %q: %w", KeysetMAC, err)
	}
	return s, nil
}

// setData builds one primitive per enabled key of the data keyset. Each
// is Tink's own AES-GCM AEAD for that key (prefix check, random IV); only
// the lookup of the key by the ciphertext's id is done here, with an
// integer map rather than Tink's string-keyed prefix map.
func (s *state) setData(h *keyset.Handle) error {
	s.byID = make(map[uint32]tink.AEAD, h.Len())
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			return err
		}
		if e.KeyStatus() != keyset.Enabled {
			continue
		}
		key, ok := e.Key().(*aesgcm.Key)
		if !ok {
			return fmt.Errorf("key %d is a %T, want an AES-GCM key", e.KeyID(), e.Key())
		}
		if p, _ := key.Parameters().(*aesgcm.Parameters); p == nil || p.Variant() != aesgcm.VariantTink || p.KeySizeInBytes() != 32 {
			return fmt.Errorf("key %d is not AES-256-GCM with a Tink prefix", e.KeyID())
		}
		a, err := aesgcm.NewAEAD(key)
		if err != nil {
			return err
		}
		s.byID[e.KeyID()] = a
		if e.IsPrimary() {
			s.primary, s.primaryID = a, e.KeyID()
		}
	}
	if s.primary == nil {
		return errors.New("no enabled primary key")
	}
	return nil
}

// with returns a copy of s in which keyset name is h, stored as ks.
func (s *state) with(name string, h *keyset.Handle, ks StoredKeyset) (*state, error) {
	handles := make(map[string]*keyset.Handle, len(s.handles))
	stored := make(map[string]StoredKeyset, len(s.stored))
	for n, v := range s.handles {
		handles[n] = v
	}
	for n, v := range s.stored {
		stored[n] = v
	}
	handles[name], stored[name] = h, ks
	return newState(handles, stored)
}

// appendAAD appends the associated data for loc to b. Each field is length
// prefixed so ("a","bc") and ("ab","c") never collide.
func appendAAD(b []byte, loc Location) []byte {
	b = append(b, aadPrefix...)
	for _, f := range [3]string{loc.Table, loc.Column, loc.RowID} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// aadBufs recycles associated-data buffers: the AEAD does not keep them, and
// on 64-byte values the allocation is a fifth of the cost of a Decrypt.
var aadBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

func getAAD(loc Location) *[]byte {
	bp := aadBufs.Get().(*[]byte)
	*bp = appendAAD((*bp)[:0], loc)
	return bp
}

func putAAD(bp *[]byte) {
	if cap(*bp) <= 4096 {
		aadBufs.Put(bp)
	}
}

const aadPrefix = "vectabase/v1\x00"

// Encrypt encrypts plaintext with the primary DEK (AES-256-GCM) bound to
// loc. The result starts with Tink's 5-byte prefix: 0x01 and the key id.
func (k *Keyring) Encrypt(ctx context.Context, loc Location, plaintext []byte) ([]byte, error) {
	aad := getAAD(loc)
	ct, err := k.state.Load().primary.Encrypt(plaintext, *aad)
	putAAD(aad)
	if err != nil {
		k.metrics.encErr.Inc()
		return nil, fmt.Errorf("keyring: encrypt %s: %w", loc, err)
	}
	k.metrics.encOK.Inc()
	return ct, nil
}

// Decrypt decrypts a ciphertext made by Encrypt for the same loc. When the
// ciphertext names a key id the keyring does not hold (another instance
// rotated), it reloads the keysets from the store once and tries again.
// Any authentication failure returns an error wrapping ErrDecrypt, naming
// the location and never the plaintext or key material.
func (k *Keyring) Decrypt(ctx context.Context, loc Location, ciphertext []byte) ([]byte, error) {
	id, err := KeyIDOf(ciphertext)
	if err != nil {
		k.metrics.decErr.Inc()
		return nil, fmt.Errorf("keyring: decrypt %s: %w", loc, ErrDecrypt)
	}
	a := k.state.Load().byID[id]
	if a == nil {
		if err := k.reloadIfStale(ctx); err != nil {
			k.metrics.decErr.Inc()
			return nil, fmt.Errorf("keyring: decrypt %s: reload keysets: %w", loc, err)
		}
		if a = k.state.Load().byID[id]; a == nil {
			k.metrics.decErr.Inc()
			return nil, fmt.Errorf("keyring: decrypt %s: %w", loc, ErrDecrypt)
		}
	}
	aad := getAAD(loc)
	pt, err := a.Decrypt(ciphertext, *aad)
	putAAD(aad)
	if err != nil {
		k.metrics.decErr.Inc()
		return nil, fmt.Errorf("keyring: decrypt %s: %w", loc, ErrDecrypt)
	}
	k.metrics.decOK.Inc()
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// KeyIDOf returns the Tink key id in a ciphertext's 5-byte prefix (0x01 and
// the big-endian key id). It errors, wrapping ErrUnknownKey, when the
// ciphertext has no such prefix.
func KeyIDOf(ciphertext []byte) (uint32, error) {
	if len(ciphertext) < 5 || ciphertext[0] != 0x01 {
		return 0, fmt.Errorf("keyring: ciphertext has no Tink key prefix: %w", ErrUnknownKey)
	}
	return binary.BigEndian.Uint32(ciphertext[1:5]), nil
}

// PrimaryKeyID returns the key id new ciphertexts are made with.
func (k *Keyring) PrimaryKeyID() uint32 { return k.state.Load().primaryID }

// BlindIndex returns a keyed PRF (HMAC-SHA256, 32 bytes) of value for
// equality look-ups in table.column. The index keyset never rotates, and the
// table and column are part of the input, so equal values in different
// columns get unrelated indexes.
func (k *Keyring) BlindIndex(table, column string, value []byte) ([]byte, error) {
	out, err := k.state.Load().index.ComputePrimaryPRF(domain("blind-index", table, column, value), 32)
	if err != nil {
		k.metrics.idxErr.Inc()
		return nil, fmt.Errorf("keyring: blind index %s.%s: %w", table, column, err)
	}
	k.metrics.idxOK.Inc()
	return out, nil
}

// MAC returns a deterministic keyed hash (HMAC-SHA256, 32 bytes) of data for
// purpose ("api_key", "audit", "session", ...). It uses its own keyset,
// untouched by DEK rotation, so stored hashes stay valid.
func (k *Keyring) MAC(purpose string, data []byte) ([]byte, error) {
	if purpose == "" {
		return nil, errors.New("keyring: MAC needs a purpose")
	}
	out, err := k.state.Load().mac.ComputePrimaryPRF(domain("mac", purpose, "", data), 32)
	if err != nil {
		k.metrics.macErr.Inc()
		return nil, fmt.Errorf("keyring: MAC %s: %w", purpose, err)
	}
	k.metrics.macOK.Inc()
	return out, nil
}

func domain(kind, a, b string, value []byte) []byte {
	buf := make([]byte, 0, len(kind)+len(a)+len(b)+len(value)+3*binary.MaxVarintLen32)
	for _, f := range [3]string{kind, a, b} {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	return append(buf, value...)
}

// pingAAD is the associated data of CheckKEK's probe; it can never be a
// keyset's (see keysetAAD).
var pingAAD = []byte("vectabase/keyring/ping")

// CheckKEK wraps and unwraps a probe value with the KEK in use, for
// /readyz: it fails while the KEK is unreachable (Vault down, token
// revoked), even though data operations keep working on the keysets
// already in memory.
func (k *Keyring) CheckKEK(ctx context.Context) error {
	kek := k.kek.Load().KEK
	ct, err := kek.Encrypt(ctx, []byte("ping"), pingAAD)
	if err == nil {
		_, err = kek.Decrypt(ctx, ct, pingAAD)
	}
	if err != nil {
		// Counted, so that an alert (deploy/prometheus/alerts.yml) sees an
		// unreachable KEK between the readiness checks that find it.
		k.metrics.ops.WithLabelValues("kek_check", "error").Inc()
		return fmt.Errorf("keyring: KEK unusable: %w", err)
	}
	k.metrics.ops.WithLabelValues("kek_check", "ok").Inc()
	return nil
}
