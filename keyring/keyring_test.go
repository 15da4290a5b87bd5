package keyring_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kektest"
	"github.com/vectabase/vectabase/keyring/local"
)

// testKEK is a fast local KEK over a fixed random key per call.
func testKEK(t testing.TB) *local.KEK {
	t.Helper()
	path := t.TempDir() + "/master.key"
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

func openKeyring(t testing.TB) (*keyring.Keyring, *kektest.MemStore, *local.KEK) {
	t.Helper()
	st := kektest.NewMemStore()
	kek := testKEK(t)
	kr, err := keyring.Open(context.Background(), st, kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	return kr, st, kek
}

var loc = keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: "7f9c"}

// TestProperty3_EncryptionRoundTrip claims: for any bytes (empty and large
// included) and any location, Decrypt(Encrypt(p)) == p.
func TestProperty3_EncryptionRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, _, _ := openKeyring(t)
	rapid.Check(t, func(rt *rapid.T) {
		var pt []byte
		if rapid.Bool().Draw(rt, "large") {
			// Drawing megabytes byte by byte is slow; draw a size and a
			// seed and fill the value from them instead.
			pt = make([]byte, rapid.IntRange(0, 4<<20).Draw(rt, "size"))
			var seed [32]byte
			binary.LittleEndian.PutUint64(seed[:], rapid.Uint64().Draw(rt, "seed"))
			mrand.NewChaCha8(seed).Read(pt)
		} else {
			pt = rapid.SliceOfN(rapid.Byte(), 0, 256).Draw(rt, "plaintext")
		}
		l := keyring.Location{
			Table:  rapid.String().Draw(rt, "table"),
			Column: rapid.String().Draw(rt, "column"),
			RowID:  rapid.String().Draw(rt, "row"),
		}
		ct, err := kr.Encrypt(ctx, l, pt)
		if err != nil {
			rt.Fatalf("Encrypt(%d bytes, %v) err = %v, want nil", len(pt), l, err)
		}
		if id, err := keyring.KeyIDOf(ct); err != nil || id != kr.PrimaryKeyID() {
			rt.Fatalf("KeyIDOf(ct) = %d, %v, want primary %d", id, err, kr.PrimaryKeyID())
		}
		got, err := kr.Decrypt(ctx, l, ct)
		if err != nil {
			rt.Fatalf("Decrypt(Encrypt(%d bytes), %v) err = %v, want nil", len(pt), l, err)
		}
		if !bytes.Equal(got, pt) {
			rt.Fatalf("Decrypt(Encrypt(p)) != p for %d bytes", len(pt))
		}
	})
}

// TestProperty4_KeyRotationPreservesData claims: after any sequence of DEK
// rotations, KEK rotations and reopenings, every value encrypted earlier
// still decrypts to its plaintext.
func TestProperty4_KeyRotationPreservesData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rapid.Check(t, func(rt *rapid.T) {
		kr, st, kek := openKeyring(t)
		type value struct {
			loc keyring.Location
			pt  []byte
			ct  []byte
		}
		var values []value
		steps := rapid.IntRange(1, 8).Draw(rt, "steps")
		for i := range steps {
			pt := rapid.SliceOfN(rapid.Byte(), 0, 256).Draw(rt, "plaintext")
			l := keyring.Location{Table: "t", Column: "c", RowID: fmt.Sprint(i)}
			ct, err := kr.Encrypt(ctx, l, pt)
			if err != nil {
				rt.Fatalf("Encrypt err = %v", err)
			}
			values = append(values, value{l, pt, ct})
			switch rapid.IntRange(0, 3).Draw(rt, "action") {
			case 0:
				if _, err := kr.RotateDEK(ctx); err != nil {
					rt.Fatalf("RotateDEK err = %v", err)
				}
			case 1:
				next := testKEK(t)
				if err := kr.RotateKEK(ctx, next); err != nil {
					rt.Fatalf("RotateKEK err = %v", err)
				}
				kek = next
			case 2:
				var err error
				if kr, err = keyring.Open(ctx, st, kek); err != nil {
					rt.Fatalf("reopen err = %v", err)
				}
			}
			for _, v := range values {
				got, err := kr.Decrypt(ctx, v.loc, v.ct)
				if err != nil || !bytes.Equal(got, v.pt) {
					rt.Fatalf("Decrypt(value of row %s) after step %d = %d bytes, %v; want the plaintext", v.loc.RowID, i, len(got), err)
				}
			}
		}
	})
}

func TestCiphertextMovedElsewhereFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, _, _ := openKeyring(t)
	ct, err := kr.Encrypt(ctx, loc, []byte("LIC-AAAA-BBBB"))
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []keyring.Location{
		{Table: loc.Table, Column: loc.Column, RowID: "another"},
		{Table: loc.Table, Column: "hwid", RowID: loc.RowID},
		{Table: "whitelist_entries", Column: loc.Column, RowID: loc.RowID},
		{Table: loc.Table + loc.Column, Column: "", RowID: loc.RowID},
	} {
		_, err := kr.Decrypt(ctx, other, ct)
		if !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("Decrypt(ct of %v at %v) err = %v, want ErrDecrypt", loc, other, err)
		}
	}
}

// TestFlippedBitFails: every single-bit flip of a ciphertext fails with
// ErrDecrypt and a message naming the place, never a panic or plaintext.
func TestFlippedBitFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, _, _ := openKeyring(t)
	pt := []byte("pi_3Nsecretpaymentintent")
	ct, err := kr.Encrypt(ctx, loc, pt)
	if err != nil {
		t.Fatal(err)
	}
	want := `keyring: decrypt whitelist_users.license_key row 7f9c: ciphertext does not authenticate`
	for i := range len(ct) * 8 {
		bad := bytes.Clone(ct)
		bad[i/8] ^= 1 << (i % 8)
		got, err := kr.Decrypt(ctx, loc, bad)
		if err == nil {
			t.Fatalf("Decrypt(ct with bit %d flipped) = %q, nil; want ErrDecrypt", i, got)
		}
		if !errors.Is(err, keyring.ErrDecrypt) || err.Error() != want {
			t.Fatalf("Decrypt(ct with bit %d flipped) err = %q, want %q", i, err, want)
		}
	}
	for _, bad := range [][]byte{nil, {}, {1}, ct[:5], ct[:len(ct)-1]} {
		if _, err := kr.Decrypt(ctx, loc, bad); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("Decrypt(%d-byte ciphertext) err = %v, want ErrDecrypt", len(bad), err)
		}
	}
}

func TestRapidGarbageNeverPanics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, _, _ := openKeyring(t)
	rapid.Check(t, func(rt *rapid.T) {
		junk := rapid.SliceOfN(rapid.Byte(), 0, 128).Draw(rt, "ciphertext")
		if _, err := kr.Decrypt(ctx, loc, junk); !errors.Is(err, keyring.ErrDecrypt) {
			rt.Fatalf("Decrypt(junk) err = %v, want ErrDecrypt", err)
		}
	})
}

// TestConcurrentOpenMakesOneKeyset: instances starting at once on an empty
// store all use the same keysets.
func TestConcurrentOpenMakesOneKeyset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := kektest.NewMemStore()
	kek := testKEK(t)
	const n = 8
	krs := make([]*keyring.Keyring, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			kr, err := keyring.Open(ctx, st, kek)
			if err != nil {
				t.Errorf("Open #%d err = %v", i, err)
			}
			krs[i] = kr
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ct, err := krs[0].Encrypt(ctx, loc, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	idx0, _ := krs[0].BlindIndex("t", "c", []byte("v"))
	for i, kr := range krs {
		if kr.PrimaryKeyID() != krs[0].PrimaryKeyID() {
			t.Errorf("instance %d primary key %d, instance 0 has %d", i, kr.PrimaryKeyID(), krs[0].PrimaryKeyID())
		}
		if _, err := kr.Decrypt(ctx, loc, ct); err != nil {
			t.Errorf("instance %d cannot decrypt instance 0's ciphertext: %v", i, err)
		}
		if idx, _ := kr.BlindIndex("t", "c", []byte("v")); !bytes.Equal(idx, idx0) {
			t.Errorf("instance %d blind index differs from instance 0's", i)
		}
	}
}

// TestDecryptReloadsAfterRotationElsewhere: instance B rotates the DEK;
// instance A decrypts B's new ciphertext by reloading once.
func TestDecryptReloadsAfterRotationElsewhere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, st, kek := openKeyring(t)
	b, err := keyring.Open(ctx, st, kek)
	if err != nil {
		t.Fatal(err)
	}
	newID, err := b.RotateDEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := b.Encrypt(ctx, loc, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := keyring.KeyIDOf(ct); id != newID {
		t.Fatalf("KeyIDOf(ct after rotation) = %d, want %d", id, newID)
	}
	if got, err := a.Decrypt(ctx, loc, ct); err != nil || string(got) != "new" {
		t.Fatalf("a.Decrypt(b's new ciphertext) = %q, %v, want %q, nil", got, err, "new")
	}
	if a.PrimaryKeyID() != newID {
		t.Errorf("a.PrimaryKeyID() after reload = %d, want %d", a.PrimaryKeyID(), newID)
	}
	// A rotates too; its stale version is detected, it reloads and retries.
	if _, err := b.RotateDEK(ctx); err != nil {
		t.Fatal(err)
	}
	third, err := a.RotateDEK(ctx)
	if err != nil {
		t.Fatalf("a.RotateDEK after b rotated err = %v, want nil (retry after conflict)", err)
	}
	st3, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st3.Keysets[0].PrimaryKeyID != third || len(st3.Keysets[0].Keys) != 4 {
		t.Errorf("b.Status data keyset = primary %d with %d keys, want primary %d with 4 keys", st3.Keysets[0].PrimaryKeyID, len(st3.Keysets[0].Keys), third)
	}
}

func TestBlindIndexAndMAC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, st, kek := openKeyring(t)
	a1, _ := kr.BlindIndex("whitelist_users", "license_key", []byte("LIC-1"))
	a2, _ := kr.BlindIndex("whitelist_users", "license_key", []byte("LIC-1"))
	b, _ := kr.BlindIndex("whitelist_entries", "license_key", []byte("LIC-1"))
	c, _ := kr.BlindIndex("whitelist_users", "license_key", []byte("LIC-2"))
	if !bytes.Equal(a1, a2) || len(a1) != 32 {
		t.Errorf("BlindIndex not deterministic or not 32 bytes: %x %x", a1, a2)
	}
	if bytes.Equal(a1, b) || bytes.Equal(a1, c) {
		t.Error("BlindIndex equal across columns or values, want domain separation")
	}
	m1, _ := kr.MAC("api_key", []byte("vb_live_x"))
	m2, _ := kr.MAC("audit", []byte("vb_live_x"))
	if bytes.Equal(m1, m2) || bytes.Equal(m1, a1) {
		t.Error("MAC equal across purposes or to a blind index, want domain separation")
	}
	if _, err := kr.MAC("", []byte("x")); err == nil {
		t.Error("MAC(empty purpose) err = nil, want an error")
	}
	// Stable across DEK and KEK rotation and restarts.
	if _, err := kr.RotateDEK(ctx); err != nil {
		t.Fatal(err)
	}
	next := testKEK(t)
	if err := kr.RotateKEK(ctx, next); err != nil {
		t.Fatal(err)
	}
	kr2, err := keyring.Open(ctx, st, next)
	if err != nil {
		t.Fatal(err)
	}
	a3, _ := kr2.BlindIndex("whitelist_users", "license_key", []byte("LIC-1"))
	m3, _ := kr2.MAC("api_key", []byte("vb_live_x"))
	if !bytes.Equal(a1, a3) || !bytes.Equal(m1, m3) {
		t.Error("BlindIndex or MAC changed after rotation and reopen, want stable")
	}
	// The old KEK no longer opens the keyring.
	if _, err := keyring.Open(ctx, st, kek); !errors.Is(err, keyring.ErrUnwrap) {
		t.Errorf("Open with the pre-rotation KEK err = %v, want ErrUnwrap", err)
	}
}

func TestRotateKEKFailureLeavesDataReadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, st, kek := openKeyring(t)
	ct, _ := kr.Encrypt(ctx, loc, []byte("v"))
	st.FailUpdate = errors.New("connection reset")
	if err := kr.RotateKEK(ctx, testKEK(t)); err == nil {
		t.Fatal("RotateKEK with a failing store err = nil, want an error")
	}
	st.FailUpdate = nil
	// The old KEK still opens everything, and the running keyring still works.
	kr2, err := keyring.Open(ctx, st, kek)
	if err != nil {
		t.Fatalf("Open with the old KEK after a failed rotation err = %v, want nil", err)
	}
	for _, k := range []*keyring.Keyring{kr, kr2} {
		if got, err := k.Decrypt(ctx, loc, ct); err != nil || string(got) != "v" {
			t.Errorf("Decrypt after failed rotation = %q, %v, want %q, nil", got, err, "v")
		}
	}
	// A KEK that cannot read back its own wrap is refused before any write.
	if err := kr.RotateKEK(ctx, brokenKEK{kek}); err == nil {
		t.Fatal("RotateKEK(broken KEK) err = nil, want an error")
	}
	if _, err := keyring.Open(ctx, st, kek); err != nil {
		t.Fatalf("Open with the old KEK after refused rotation err = %v, want nil", err)
	}
}

// brokenKEK encrypts but cannot decrypt.
type brokenKEK struct{ keyring.KEK }

func (brokenKEK) Decrypt(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("broken")
}

func TestDestroyKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, st, kek := openKeyring(t)
	oldID := kr.PrimaryKeyID()
	ct, _ := kr.Encrypt(ctx, loc, []byte("v"))
	if err := kr.DestroyKey(ctx, oldID); err == nil {
		t.Fatal("DestroyKey(primary) err = nil, want an error")
	}
	if err := kr.DestroyKey(ctx, 12345); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("DestroyKey(unknown) err = %v, want ErrUnknownKey", err)
	}
	newID, err := kr.RotateDEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.DestroyKey(ctx, oldID); err != nil {
		t.Fatalf("DestroyKey(old) err = %v, want nil", err)
	}
	if _, err := kr.Decrypt(ctx, loc, ct); !errors.Is(err, keyring.ErrDecrypt) {
		t.Errorf("Decrypt(ct of destroyed key) err = %v, want ErrDecrypt", err)
	}
	kr2, err := keyring.Open(ctx, st, kek)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint32{newID}, kr2.KeyIDs()); diff != "" {
		t.Errorf("KeyIDs after destroy (-want +got):\n%s", diff)
	}
}

func TestKeysetsBoundToTheirNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, st, kek := openKeyring(t)
	data, _ := st.Get(keyring.KeysetData)
	index, _ := st.Get(keyring.KeysetIndex)
	// Swap the wrapped index keyset into the data row.
	data.Wrapped = index.Wrapped
	st.Set(data)
	_, err := keyring.Open(ctx, st, kek)
	if !errors.Is(err, keyring.ErrUnwrap) {
		t.Errorf("Open with the index keyset in the data row err = %v, want ErrUnwrap", err)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, _, kek := openKeyring(t)
	s, err := kr.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.KEKBackend != "local" || s.KEKKeyID != kek.KEKKeyID() {
		t.Errorf("Status KEK = %q %q, want local %q", s.KEKBackend, s.KEKKeyID, kek.KEKKeyID())
	}
	var names []string
	for _, ks := range s.Keysets {
		names = append(names, ks.Name+"/"+ks.Purpose)
		if len(ks.Keys) != 1 || !ks.Keys[0].Primary || ks.Keys[0].Status != "ENABLED" || ks.Version != 1 {
			t.Errorf("keyset %s status = %+v, want one enabled primary key at version 1", ks.Name, ks)
		}
	}
	if diff := cmp.Diff([]string{"data/aead", "index/prf", "mac/prf"}, names); diff != "" {
		t.Errorf("Status keysets (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	kr, err := keyring.Open(ctx, kektest.NewMemStore(), testKEK(t), keyring.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	// A second keyring on the same registry shares the counter.
	if _, err := keyring.Open(ctx, kektest.NewMemStore(), testKEK(t), keyring.WithRegisterer(reg)); err != nil {
		t.Fatalf("second Open on one registry err = %v, want nil", err)
	}
	ct, _ := kr.Encrypt(ctx, loc, []byte("v"))
	kr.Decrypt(ctx, loc, ct)
	kr.Decrypt(ctx, loc, ct[:10])
	kr.BlindIndex("t", "c", []byte("v"))
	kr.MAC("api_key", []byte("v"))
	want := `
# HELP vectabase_keyring_ops_total Keyring operations by operation and result.
# TYPE vectabase_keyring_ops_total counter
vectabase_keyring_ops_total{op="blind_index",result="error"} 0
vectabase_keyring_ops_total{op="blind_index",result="ok"} 1
vectabase_keyring_ops_total{op="decrypt",result="error"} 1
vectabase_keyring_ops_total{op="decrypt",result="ok"} 1
vectabase_keyring_ops_total{op="encrypt",result="error"} 0
vectabase_keyring_ops_total{op="encrypt",result="ok"} 1
vectabase_keyring_ops_total{op="mac",result="error"} 0
vectabase_keyring_ops_total{op="mac",result="ok"} 1
vectabase_keyring_ops_total{op="open",result="ok"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vectabase_keyring_ops_total"); err != nil {
		t.Error(err)
	}
}

func TestPassphraseSalt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := kektest.NewMemStore()
	var wg sync.WaitGroup
	salts := make([][]byte, 8)
	for i := range salts {
		wg.Go(func() {
			s, err := keyring.PassphraseSalt(ctx, st)
			if err != nil {
				t.Errorf("PassphraseSalt err = %v", err)
			}
			salts[i] = s
		})
	}
	wg.Wait()
	for i, s := range salts {
		if len(s) != 32 || !bytes.Equal(s, salts[0]) {
			t.Errorf("salt %d = %x, want the same 32 bytes as salt 0 (%x)", i, s, salts[0])
		}
	}
}

func TestConfigStringRedactsPassphrase(t *testing.T) {
	t.Parallel()
	c := keyring.Config{Backend: "local", Passphrase: "hunter2-very-secret", TransitMount: "transit", TransitKey: "vectabase"}
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(&c)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("formatted Config %q shows the passphrase", s)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(passphrase config) err = %v, want nil", err)
	}
	if err := (keyring.Config{Backend: "local"}).Validate(); err == nil {
		t.Error("Validate(local without key file or passphrase) err = nil, want an error")
	}
	if err := (keyring.Config{Backend: "kms"}).Validate(); err == nil {
		t.Error("Validate(unknown backend) err = nil, want an error")
	}
}

func TestEncryptLargeAndEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, _, _ := openKeyring(t)
	for _, n := range []int{0, 1 << 20, 8 << 20} {
		pt := bytes.Repeat([]byte{0xA5}, n)
		ct, err := kr.Encrypt(ctx, loc, pt)
		if err != nil {
			t.Fatalf("Encrypt(%d bytes) err = %v", n, err)
		}
		got, err := kr.Decrypt(ctx, loc, ct)
		if err != nil || !bytes.Equal(got, pt) || got == nil {
			t.Fatalf("Decrypt(Encrypt(%d bytes)) = %d bytes (nil %v), %v; want the plaintext", n, len(got), got == nil, err)
		}
	}
}

// downKEK fails every call while down is set: a KMS that became unreachable.
type downKEK struct {
	keyring.KEK
	down *atomic.Bool
}

func (d downKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if d.down.Load() {
		return nil, errors.New("kms unreachable")
	}
	return d.KEK.Encrypt(ctx, pt, ad)
}

func (d downKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if d.down.Load() {
		return nil, errors.New("kms unreachable")
	}
	return d.KEK.Decrypt(ctx, ct, ad)
}

// TestCheckKEK: readiness follows the KEK, while data operations keep
// working on the keysets in memory.
func TestCheckKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var down atomic.Bool
	kr, err := keyring.Open(ctx, kektest.NewMemStore(), downKEK{testKEK(t), &down})
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.CheckKEK(ctx); err != nil {
		t.Fatalf("CheckKEK err = %v, want nil", err)
	}
	down.Store(true)
	if err := kr.CheckKEK(ctx); err == nil || !strings.Contains(err.Error(), "kms unreachable") {
		t.Fatalf("CheckKEK with the KEK down err = %v, want the KEK's error", err)
	}
	ct, err := kr.Encrypt(ctx, loc, []byte("v"))
	if err != nil {
		t.Fatalf("Encrypt with the KEK down err = %v, want nil", err)
	}
	if _, err := kr.Decrypt(ctx, loc, ct); err != nil {
		t.Fatalf("Decrypt with the KEK down err = %v, want nil", err)
	}
}

// TestPartialKeysetsWrongKEK: after a start that created only some keysets,
// a wrong KEK fails without adding keysets under itself.
func TestPartialKeysetsWrongKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, st, _ := openKeyring(t)
	full := kektest.NewMemStore()
	data, _ := st.Get(keyring.KeysetData)
	full.Set(data)
	if _, err := keyring.Open(ctx, full, testKEK(t)); !errors.Is(err, keyring.ErrUnwrap) {
		t.Fatalf("Open(partial store, wrong KEK) err = %v, want ErrUnwrap", err)
	}
	if kss, _ := full.Keysets(ctx); len(kss) != 1 {
		t.Errorf("store holds %d keysets after a refused Open, want 1 (nothing added)", len(kss))
	}
}
