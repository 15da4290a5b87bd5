package kektest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vectabase/vectabase/keyring"
)

var _ keyring.Store = (*MemStore)(nil)

// MemStore is an in-memory keyring.Store for tests that need no database.
// It follows the Store contract (create-if-absent, optimistic versions, all
// or nothing updates) so keyring logic can be tested on it.
type MemStore struct {
	mu      sync.Mutex
	keysets map[string]keyring.StoredKeyset
	meta    map[string][]byte

	// FailUpdate, when set, is returned by UpdateKeysets instead of writing:
	// a store failing midway through a rotation.
	FailUpdate error
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{keysets: map[string]keyring.StoredKeyset{}, meta: map[string][]byte{}}
}

func clone(ks keyring.StoredKeyset) keyring.StoredKeyset {
	ks.Wrapped = bytes.Clone(ks.Wrapped)
	return ks
}

// Keysets returns copies of every stored keyset.
func (m *MemStore) Keysets(_ context.Context) ([]keyring.StoredKeyset, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]keyring.StoredKeyset, 0, len(m.keysets))
	for _, ks := range m.keysets {
		out = append(out, clone(ks))
	}
	return out, nil
}

// CreateKeyset stores ks unless its name is taken, and returns what is stored.
func (m *MemStore) CreateKeyset(_ context.Context, ks keyring.StoredKeyset) (keyring.StoredKeyset, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.keysets[ks.Name]; ok {
		return clone(cur), nil
	}
	now := time.Now()
	ks = clone(ks)
	ks.Version, ks.CreatedAt, ks.UpdatedAt = 1, now, now
	m.keysets[ks.Name] = ks
	return clone(ks), nil
}

// UpdateKeysets replaces the given keysets when their versions match.
func (m *MemStore) UpdateKeysets(_ context.Context, kss []keyring.StoredKeyset) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailUpdate != nil {
		return m.FailUpdate
	}
	for _, ks := range kss {
		cur, ok := m.keysets[ks.Name]
		if !ok {
			return fmt.Errorf("keyset %q: %w", ks.Name, keyring.ErrNotFound)
		}
		if cur.Version != ks.Version {
			return fmt.Errorf("keyset %q: version %d, stored %d: %w", ks.Name, ks.Version, cur.Version, keyring.ErrConflict)
		}
	}
	now := time.Now()
	for _, ks := range kss {
		ks = clone(ks)
		ks.Version++
		ks.CreatedAt, ks.UpdatedAt = m.keysets[ks.Name].CreatedAt, now
		m.keysets[ks.Name] = ks
	}
	return nil
}

// GetOrCreateMeta returns the value under name, storing value if absent.
func (m *MemStore) GetOrCreateMeta(_ context.Context, name string, value []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.meta[name]; ok {
		return bytes.Clone(cur), nil
	}
	m.meta[name] = bytes.Clone(value)
	return bytes.Clone(value), nil
}

// Set overwrites a stored keyset as is, bypassing version checks: for tests
// that corrupt or swap stored rows.
func (m *MemStore) Set(ks keyring.StoredKeyset) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keysets[ks.Name] = clone(ks)
}

// Get returns a copy of a stored keyset.
func (m *MemStore) Get(name string) (keyring.StoredKeyset, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks, ok := m.keysets[name]
	return clone(ks), ok
}
