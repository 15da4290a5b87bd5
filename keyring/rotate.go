package keyring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// maxAttempts bounds the retries of an update that lost an optimistic
// version check to another instance.
const maxAttempts = 3

// Reload reads the keysets from the store and unwraps them again, picking up
// a rotation made by another instance. On failure the keyring keeps the
// keysets it had.
func (k *Keyring) Reload(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked(ctx, false)
}

// reloadIfStale reloads only when a stored keyset version differs from the
// loaded one, so a ciphertext with a bogus key id costs one small query and
// no KEK call.
func (k *Keyring) reloadIfStale(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked(ctx, true)
}

func (k *Keyring) reloadLocked(ctx context.Context, onlyIfStale bool) error {
	stored, err := k.st.Keysets(ctx)
	if err != nil {
		k.metrics.ops.WithLabelValues("reload", "error").Inc()
		return fmt.Errorf("keyring: load keysets: %w", err)
	}
	if onlyIfStale && !k.stale(stored) {
		return nil
	}
	s, err := k.unwrapAll(ctx, k.kek.Load().KEK, stored)
	if err != nil {
		k.metrics.ops.WithLabelValues("reload", "error").Inc()
		return err
	}
	k.state.Store(s)
	if !onlyIfStale {
		// A restore or another instance's change: personal keys may be
		// gone or different, so load them again.
		k.personal.forget("")
	}
	k.metrics.ops.WithLabelValues("reload", "ok").Inc()
	return nil
}

func (k *Keyring) stale(stored []StoredKeyset) bool {
	cur := k.state.Load().stored
	if len(stored) != len(cur) {
		return true
	}
	for _, ks := range stored {
		if c, ok := cur[ks.Name]; !ok || c.Version != ks.Version {
			return true
		}
	}
	return false
}

// RotateDEK adds a new AES-256-GCM data key and makes it primary, persisting
// the re-wrapped data keyset with an optimistic version check. Old keys stay
// in the keyset, so every earlier ciphertext still decrypts. It returns the
// new primary key id.
func (k *Keyring) RotateDEK(ctx context.Context) (uint32, error) {
	var newID uint32
	err := k.updateKeyset(ctx, "rotate_dek", KeysetData, func(m *keyset.Manager) error {
		id, err := m.Add(aead.AES256GCMKeyTemplate())
		if err != nil {
			return err
		}
		newID = id
		return m.SetPrimary(id)
	})
	if err != nil {
		return 0, err
	}
	return newID, nil
}

// DestroyKey removes a non-primary key from the data keyset for good:
// ciphertexts made by it can never be decrypted again. The caller checks
// first that no stored ciphertext uses it (store.CountCiphertextsByKeyID).
// It returns an error wrapping ErrUnknownKey for a key id not in the keyset.
func (k *Keyring) DestroyKey(ctx context.Context, keyID uint32) error {
	return k.updateKeyset(ctx, "destroy_key", KeysetData, func(m *keyset.Manager) error {
		h, err := m.Handle()
		if err != nil {
			return err
		}
		found := false
		for _, ki := range h.KeysetInfo().GetKeyInfo() {
			if ki.GetKeyId() == keyID {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("key %d: %w", keyID, ErrUnknownKey)
		}
		if h.KeysetInfo().GetPrimaryKeyId() == keyID {
			return fmt.Errorf("key %d is the primary key; rotate first", keyID)
		}
		return m.Delete(keyID)
	})
}

// updateKeyset applies change to keyset name, wraps and stores the result,
// and swaps it into memory. When another instance changed the keyset
// meanwhile, it reloads and applies change again.
func (k *Keyring) updateKeyset(ctx context.Context, op, name string, change func(*keyset.Manager) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.updateKeysetLocked(ctx, name, change)
	result := "ok"
	if err != nil {
		result = "error"
	}
	k.metrics.ops.WithLabelValues(op, result).Inc()
	return err
}

func (k *Keyring) updateKeysetLocked(ctx context.Context, name string, change func(*keyset.Manager) error) error {
	kek := k.kek.Load().KEK
	for attempt := 1; ; attempt++ {
		s := k.state.Load()
		m := keyset.NewManagerFromHandle(s.handles[name])
		if err := change(m); err != nil {
			return fmt.Errorf("keyring: keyset %q: %w", name, err)
		}
		h, err := m.Handle()
		if err != nil {
			return fmt.Errorf("keyring: keyset %q: %w", name, err)
		}
		ks := s.stored[name]
		if ks.Wrapped, err = wrap(ctx, kek, name, h); err != nil {
			return err
		}
		ks.KEKBackend, ks.KEKKeyID = describe(kek)
		err = k.st.UpdateKeysets(ctx, []StoredKeyset{ks})
		if errors.Is(err, ErrConflict) && attempt < maxAttempts {
			if err := k.reloadLocked(ctx, false); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("keyring: store keyset %q: %w", name, err)
		}
		ks.Version++
		ks.UpdatedAt = time.Now()
		ns, err := s.with(name, h, ks)
		if err != nil {
			return err
		}
		k.state.Store(ns)
		return nil
	}
}

// RotateKEK re-wraps every keyset under next and from then on uses next.
// Data is untouched. All keysets are wrapped and checked to unwrap under next
// before one transaction replaces them, so a failure at any point leaves the
// stored keysets readable by the old KEK, and success leaves them all
// readable by next.
func (k *Keyring) RotateKEK(ctx context.Context, next KEK) error {
	if next == nil {
		return errors.New("keyring: RotateKEK needs a KEK")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.rotateKEKLocked(ctx, next)
	result := "ok"
	if err != nil {
		result = "error"
	}
	k.metrics.ops.WithLabelValues("rotate_kek", result).Inc()
	return err
}

func (k *Keyring) rotateKEKLocked(ctx context.Context, next KEK) error {
	backend, keyID := describe(next)
	for attempt := 1; ; attempt++ {
		s := k.state.Load()
		var kss []StoredKeyset
		for _, spec := range keysetSpecs {
			ks := s.stored[spec.name]
			wrapped, err := wrap(ctx, next, spec.name, s.handles[spec.name])
			if err != nil {
				return fmt.Errorf("keyring: rotate KEK: %w", err)
			}
			ks.Wrapped, ks.KEKBackend, ks.KEKKeyID = wrapped, backend, keyID
			// Prove next can read what it wrote before replacing anything.
			if _, err := unwrap(ctx, next, ks); err != nil {
				return fmt.Errorf("keyring: rotate KEK: new KEK cannot read back its own wrap: %w", err)
			}
			kss = append(kss, ks)
		}
		err := k.st.UpdateKeysets(ctx, kss)
		if errors.Is(err, ErrConflict) && attempt < maxAttempts {
			if err := k.reloadLocked(ctx, false); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("keyring: rotate KEK: store keysets: %w", err)
		}
		stored := make(map[string]StoredKeyset, len(kss))
		for _, ks := range kss {
			ks.Version++
			ks.UpdatedAt = time.Now()
			stored[ks.Name] = ks
		}
		ns, err := newState(s.handles, stored)
		if err != nil {
			return err
		}
		k.kek.Store(&kekBox{next})
		k.state.Store(ns)
		return nil
	}
}

// Status describes the loaded keysets and the KEK. It first reloads when
// another instance changed a keyset.
type Status struct {
	KEKBackend string         `json:"kekBackend"`
	KEKKeyID   string         `json:"kekKeyId"`
	Keysets    []KeysetStatus `json:"keysets"`
}

// KeysetStatus describes one keyset; it holds no key material.
type KeysetStatus struct {
	Name         string `json:"name"`
	Purpose      string `json:"purpose"`
	PrimaryKeyID uint32 `json:"primaryKeyId"`
	Version      int64  `json:"version"`
	KEKBackend   string `json:"kekBackend"`
	KEKKeyID     string `json:"kekKeyId"`
	// KEKKeyVersion is the version of the KEK's key that made the wrap,
	// where the wrap names it (Vault transit's "v3"); empty otherwise.
	KEKKeyVersion string      `json:"kekKeyVersion,omitempty"`
	CreatedAt     time.Time   `json:"createdAt"`
	UpdatedAt     time.Time   `json:"updatedAt"`
	Keys          []KeyStatus `json:"keys"`
}

// KeyStatus describes one key of a keyset.
type KeyStatus struct {
	KeyID   uint32 `json:"keyId"`
	Status  string `json:"status"` // ENABLED, DISABLED or DESTROYED
	Primary bool   `json:"primary"`
	TypeURL string `json:"typeUrl"`
}

// Status reports the keysets, their keys and the KEK in use, reloading
// first when the store holds newer keysets than memory.
func (k *Keyring) Status(ctx context.Context) (Status, error) {
	if err := k.reloadIfStale(ctx); err != nil {
		return Status{}, err
	}
	s := k.state.Load()
	backend, keyID := describe(k.kek.Load().KEK)
	st := Status{KEKBackend: backend, KEKKeyID: keyID}
	for _, spec := range keysetSpecs {
		ks := s.stored[spec.name]
		info := s.handles[spec.name].KeysetInfo()
		kst := KeysetStatus{
			Name: ks.Name, Purpose: ks.Purpose, PrimaryKeyID: info.GetPrimaryKeyId(),
			Version: ks.Version, KEKBackend: ks.KEKBackend, KEKKeyID: ks.KEKKeyID,
			KEKKeyVersion: wrapKeyVersion(ks.Wrapped),
			CreatedAt:     ks.CreatedAt, UpdatedAt: ks.UpdatedAt,
		}
		for _, ki := range info.GetKeyInfo() {
			kst.Keys = append(kst.Keys, KeyStatus{
				KeyID: ki.GetKeyId(), Status: ki.GetStatus().String(),
				Primary: ki.GetKeyId() == info.GetPrimaryKeyId(), TypeURL: ki.GetTypeUrl(),
			})
		}
		slices.SortFunc(kst.Keys, func(a, b KeyStatus) int { return int(int64(a.KeyID) - int64(b.KeyID)) })
		st.Keysets = append(st.Keysets, kst)
	}
	return st, nil
}

// KeyIDs returns the ids of the keys in the data keyset, primary first.
func (k *Keyring) KeyIDs() []uint32 {
	s := k.state.Load()
	ids := []uint32{s.primaryID}
	for id := range s.byID {
		if id != s.primaryID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids[1:])
	return ids
}

// wrapKeyVersion reads the KEK key version a wrapped keyset names: Vault
// transit ciphertexts start "vault:vN:". Other backends do not expose one.
func wrapKeyVersion(wrapped []byte) string {
	ek, err := keyset.NewBinaryReader(bytes.NewReader(wrapped)).ReadEncrypted()
	if err != nil {
		return ""
	}
	ct := ek.GetEncryptedKeyset()
	if rest, ok := bytes.CutPrefix(ct, []byte("vault:")); ok {
		if v, _, ok := bytes.Cut(rest, []byte(":")); ok && len(v) < 12 {
			return string(v)
		}
	}
	return ""
}
