package local_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kektest"
	"github.com/vectabase/vectabase/keyring/local"
)

func newKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatalf("GenerateKeyFile(%s) err = %v, want nil", path, err)
	}
	return path
}

func TestKeyFileKEK(t *testing.T) {
	t.Parallel()
	path, other := newKeyFile(t), newKeyFile(t)
	open := func(path string) keyring.KEK {
		kek, err := local.NewFromFile(path)
		if err != nil {
			t.Fatalf("NewFromFile(%s) err = %v, want nil", path, err)
		}
		return kek
	}
	// A key file has no disabled state and no remote part: those cases
	// skip, saying so.
	kektest.RunBackend(t, kektest.Backend{
		New:   func() keyring.KEK { return open(path) },
		Other: func() keyring.KEK { return open(other) },
	})
}

func TestPassphraseKEK(t *testing.T) {
	t.Parallel()
	salt := []byte("0123456789abcdef")
	// Derivation is deliberately slow; derive once, as a server does.
	kek := sync.OnceValue(func() *local.KEK {
		k, err := local.NewFromPassphrase("correct horse battery staple", salt)
		if err != nil {
			t.Fatalf("NewFromPassphrase err = %v, want nil", err)
		}
		return k
	})
	other := sync.OnceValue(func() *local.KEK {
		k, err := local.NewFromPassphrase("another passphrase entirely", salt)
		if err != nil {
			t.Fatalf("NewFromPassphrase err = %v, want nil", err)
		}
		return k
	})
	kektest.RunBackend(t, kektest.Backend{
		New:   func() keyring.KEK { return kek() },
		Other: func() keyring.KEK { return other() },
	})
}

func TestGenerateKeyFile(t *testing.T) {
	t.Parallel()
	path := newKeyFile(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %o, want 600", got)
	}
	raw, _ := os.ReadFile(path)
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != local.KeySize {
		t.Errorf("key file holds %d bytes (err %v), want %d base64 bytes", len(key), err, local.KeySize)
	}
	if err := local.GenerateKeyFile(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("GenerateKeyFile over an existing file err = %v, want an 'already exists' error", err)
	}
}

func TestNewFromFileBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	short := base64.StdEncoding.EncodeToString([]byte("only-sixteen-byt"))
	long := base64.StdEncoding.EncodeToString([]byte("this key is much too long for AES-256 at 40"))
	notB64 := "this is not base64 !!! SECRETSECRET"
	tests := []struct {
		name, path, want string
		secret           string
	}{
		{"missing", filepath.Join(dir, "nope.key"), "does not exist", ""},
		{"not base64", write("bad64.key", notB64), "is not base64", "SECRETSECRET"},
		{"too short", write("short.key", short), "holds 16 bytes, want 32", short},
		{"too long", write("long.key", long), "want 32", long},
		{"empty", write("empty.key", ""), "holds 0 bytes, want 32", ""},
		{"directory", dir, "read master key file", ""},
	}
	for _, tc := range tests {
		_, err := local.NewFromFile(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewFromFile err = %v, want one containing %q", tc.name, err, tc.want)
			continue
		}
		if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: NewFromFile err = %q leaks the file content", tc.name, err)
		}
	}
}

func TestNewFromPassphraseBadInput(t *testing.T) {
	t.Parallel()
	if _, err := local.NewFromPassphrase("", []byte("0123456789abcdef")); err == nil {
		t.Error("NewFromPassphrase(empty) err = nil, want an error")
	}
	if _, err := local.NewFromPassphrase("pass", []byte("short")); err == nil || !strings.Contains(err.Error(), "salt") {
		t.Errorf("NewFromPassphrase(5-byte salt) err = %v, want a salt error", err)
	}
}

// TestWrongKEKAtOpen: a keyring made under one key and opened under another
// fails at Open, says why, and shows no key material.
func TestWrongKEKAtOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := kektest.NewMemStore()
	right, err := local.NewFromFile(newKeyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.Open(ctx, st, right); err != nil {
		t.Fatalf("Open err = %v, want nil", err)
	}

	wrongPath := newKeyFile(t)
	wrongFile, err := local.NewFromFile(wrongPath)
	if err != nil {
		t.Fatal(err)
	}
	wrongPass, err := local.NewFromPassphrase("not the passphrase", []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	wrongKeyText, _ := os.ReadFile(wrongPath)
	for name, kek := range map[string]keyring.KEK{"wrong key file": wrongFile, "wrong passphrase": wrongPass} {
		_, err := keyring.Open(ctx, st, kek)
		if !errors.Is(err, keyring.ErrUnwrap) {
			t.Fatalf("%s: Open err = %v, want ErrUnwrap", name, err)
		}
		const want = `keyring: KEK cannot unwrap keyset "data": wrong master key or passphrase`
		if err.Error() != want {
			t.Errorf("%s: Open err = %q, want %q", name, err, want)
		}
		if strings.Contains(err.Error(), strings.TrimSpace(string(wrongKeyText))) {
			t.Errorf("%s: Open err leaks the key", name)
		}
	}
}

func TestKEKKeyIDIsStableAndDistinct(t *testing.T) {
	t.Parallel()
	path := newKeyFile(t)
	a, _ := local.NewFromFile(path)
	b, _ := local.NewFromFile(path)
	c, _ := local.NewFromFile(newKeyFile(t))
	if a.KEKKeyID() != b.KEKKeyID() {
		t.Errorf("KEKKeyID of one key file = %q and %q, want equal", a.KEKKeyID(), b.KEKKeyID())
	}
	if a.KEKKeyID() == c.KEKKeyID() {
		t.Errorf("KEKKeyID of two key files both %q, want different", a.KEKKeyID())
	}
	if !strings.HasPrefix(a.KEKKeyID(), "file:") || a.KEKBackend() != "local" {
		t.Errorf("KEKBackend, KEKKeyID = %q, %q; want local, file:…", a.KEKBackend(), a.KEKKeyID())
	}
}
