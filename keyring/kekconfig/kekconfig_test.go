package kekconfig_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kekconfig"
	"github.com/vectabase/vectabase/keyring/kektest"
	"github.com/vectabase/vectabase/keyring/local"
)

func TestNew(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	st := kektest.NewMemStore()

	file, err := kekconfig.New(ctx, keyring.Config{Backend: "local", MasterKeyFile: path}, st)
	if err != nil {
		t.Fatalf("New(key file) err = %v, want nil", err)
	}
	if id := file.(keyring.KEKDescriber).KEKKeyID(); !strings.HasPrefix(id, "file:") {
		t.Errorf("key file KEK id = %q, want file:…", id)
	}

	cfg := keyring.Config{Backend: "local", Passphrase: "correct horse battery staple"}
	p1, err := kekconfig.New(ctx, cfg, st)
	if err != nil {
		t.Fatalf("New(passphrase) err = %v, want nil", err)
	}
	p2, err := kekconfig.New(ctx, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	// The salt is stored once, so a restart derives the same key.
	if a, b := p1.(keyring.KEKDescriber).KEKKeyID(), p2.(keyring.KEKDescriber).KEKKeyID(); a != b {
		t.Errorf("passphrase KEK ids across restarts = %q, %q; want equal", a, b)
	}

	for _, bad := range []keyring.Config{
		{Backend: "local"},
		{Backend: "local", MasterKeyFile: path, Passphrase: "x"},
		{Backend: "aws"},
		{Backend: "local", MasterKeyFile: filepath.Join(t.TempDir(), "missing.key")},
	} {
		if _, err := kekconfig.New(ctx, bad, st); err == nil {
			t.Errorf("New(%v) err = nil, want an error", bad)
		}
	}
}
