//go:build cgo

package pkcs11_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kektest"
	"github.com/vectabase/vectabase/keyring/pkcs11"
)

func open(t *testing.T, c pkcs11.Config) *pkcs11.KEK {
	t.Helper()
	k, err := pkcs11.New(context.Background(), c)
	if err != nil {
		t.Fatalf("pkcs11.New(%v) err = %v, want nil", c, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// setKeyUsage sets CKA_ENCRYPT and CKA_DECRYPT of the key labelled label,
// through a session of the test's own: the HSM operator's "disable".
func setKeyUsage(t *testing.T, token, label string, allowed bool) {
	t.Helper()
	ctx := p11.New(softhsm.module)
	_ = ctx.Initialize()
	s, _ := session(t, ctx, token)
	defer ctx.CloseSession(s)
	if err := ctx.FindObjectsInit(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, label)}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := ctx.FindObjects(s, 1)
	_ = ctx.FindObjectsFinal(s)
	if err != nil || len(objs) != 1 {
		t.Fatalf("find key %q: %v (%d found)", label, err, len(objs))
	}
	if err := ctx.SetAttributeValue(s, objs[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ENCRYPT, allowed), p11.NewAttribute(p11.CKA_DECRYPT, allowed),
	}); err != nil {
		t.Fatalf("set CKA_ENCRYPT/CKA_DECRYPT of %q to %v: %v", label, allowed, err)
	}
}

func session(t *testing.T, ctx *p11.Ctx, token string) (p11.SessionHandle, uint) {
	t.Helper()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range slots {
		if ti, err := ctx.GetTokenInfo(slot); err == nil && strings.TrimRight(ti.Label, " ") == token {
			s, err := ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
			if err != nil {
				t.Fatal(err)
			}
			if err := ctx.Login(s, p11.CKU_USER, userPIN); err != nil && err != p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN) {
				t.Fatal(err)
			}
			return s, slot
		}
	}
	t.Fatalf("no token %q", token)
	return 0, 0
}

// TestConformance runs the shared KEK suite against an AES key in a
// SoftHSM2 token: "other" is the wrong key, clearing CKA_ENCRYPT and
// CKA_DECRYPT disables the key, and a KEK whose sessions the token closed
// (as a network HSM does when the link drops) is the backend down.
func TestConformance(t *testing.T) {
	need(t)
	kektest.RunBackend(t, kektest.Backend{
		New:   func() keyring.KEK { return open(t, cfg(tokenLabel, "kek")) },
		Other: func() keyring.KEK { return open(t, cfg(tokenLabel, "other")) },
		Disable: func(t *testing.T) func() {
			setKeyUsage(t, tokenLabel, "kek", false)
			return func() { setKeyUsage(t, tokenLabel, "kek", true) }
		},
		Down: func(t *testing.T) keyring.KEK {
			k := open(t, cfg(downToken, "kek"))
			ctx := p11.New(softhsm.module)
			_ = ctx.Initialize()
			s, slot := session(t, ctx, downToken)
			_ = ctx.CloseSession(s)
			if err := ctx.CloseAllSessions(slot); err != nil {
				t.Fatal(err)
			}
			return k
		},
	})
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	need(t)
	ctx := context.Background()
	wrongPIN := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrongPIN, []byte("not-the-pin-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg  pkcs11.Config
		want string
	}{
		{pkcs11.Config{Module: softhsm.module, TokenLabel: tokenLabel, PINFile: wrongPIN, KeyLabel: "kek"}, "wrong PIN"},
		{cfg("no-such-token", "kek"), "no token"},
		{cfg(tokenLabel, "no-such-key"), "found 0"},
		{pkcs11.Config{Module: filepath.Join(t.TempDir(), "missing.so"), TokenLabel: tokenLabel, PINFile: softhsm.pinFile, KeyLabel: "kek"}, "cannot load"},
		{pkcs11.Config{Module: softhsm.module, TokenLabel: tokenLabel, KeyLabel: "kek"}, "PIN"},
	} {
		_, err := pkcs11.New(ctx, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%v) err = %v, want one containing %q", c.cfg, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), userPIN) {
			t.Errorf("New(%v) err = %v names the PIN", c.cfg, err)
		}
	}
}
