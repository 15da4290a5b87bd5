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

// KEYRING_PREVIOUS_KEKS makes a chain: wraps by the previous key file
// unwrap, new wraps are the current key's, and bad specs are refused with
// the variable named.
func TestPreviousKEKs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	oldPath, curPath := filepath.Join(dir, "old.key"), filepath.Join(dir, "cur.key")
	for _, p := range []string{oldPath, curPath} {
		if err := local.GenerateKeyFile(p); err != nil {
			t.Fatal(err)
		}
	}
	st := kektest.NewMemStore()
	old, err := kekconfig.New(ctx, keyring.Config{Backend: "local", MasterKeyFile: oldPath}, st)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := old.Encrypt(ctx, []byte("before the move"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := kekconfig.New(ctx, keyring.Config{Backend: "local", MasterKeyFile: curPath, PreviousKEKs: " local:" + oldPath + " ,"}, st)
	if err != nil {
		t.Fatalf("New with KEYRING_PREVIOUS_KEKS err = %v, want nil", err)
	}
	if got, err := kek.Decrypt(ctx, ct, []byte("ad")); err != nil || string(got) != "before the move" {
		t.Fatalf("Decrypt of a previous KEK's wrap = %q, %v", got, err)
	}
	if len(keyring.KEKsOf(kek)) != 2 {
		t.Errorf("KEKsOf = %d KEKs, want 2", len(keyring.KEKsOf(kek)))
	}
	for _, bad := range []string{"local:", "gcpkms:projects/x", "vault:onlymount", "local:" + filepath.Join(dir, "missing.key")} {
		_, err := kekconfig.New(ctx, keyring.Config{Backend: "local", MasterKeyFile: curPath, PreviousKEKs: bad}, st)
		if err == nil || !strings.Contains(err.Error(), "KEYRING_PREVIOUS_KEKS") {
			t.Errorf("New with KEYRING_PREVIOUS_KEKS=%q err = %v, want an error naming the variable", bad, err)
		}
	}
	for _, bad := range []keyring.Config{
		{Backend: "awskms"},
		{Backend: "pkcs11", PKCS11Module: "/x.so", PKCS11TokenLabel: "t", PKCS11KeyLabel: "k"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%v) err = nil, want the missing variable named", bad)
		}
	}
}
