package keyring_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kektest"
	"github.com/vectabase/vectabase/keyring/local"
)

func localKEK(t *testing.T) keyring.KEK {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k")
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	k, err := local.NewFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// unreachableKEK is a KEK whose backend cannot be reached.
type unreachableKEK struct{}

func (unreachableKEK) Encrypt(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("kms unreachable")
}
func (unreachableKEK) Decrypt(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("kms unreachable")
}

func TestChainWrapsWithTheCurrentAndUnwrapsWithAny(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old, cur, stranger := localKEK(t), localKEK(t), localKEK(t)
	chain := keyring.NewChain(cur, old)
	byOld, err := old.Encrypt(ctx, []byte("old wrap"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := chain.Decrypt(ctx, byOld, []byte("ad")); err != nil || string(got) != "old wrap" {
		t.Fatalf("chain.Decrypt(wrap by a previous KEK) = %q, %v", got, err)
	}
	byChain, err := chain.Encrypt(ctx, []byte("new wrap"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Decrypt(ctx, byChain, []byte("ad")); err == nil {
		t.Error("the chain wrapped with a previous KEK, want the current one")
	}
	if got, err := cur.Decrypt(ctx, byChain, []byte("ad")); err != nil || string(got) != "new wrap" {
		t.Errorf("current.Decrypt(chain wrap) = %q, %v", got, err)
	}
	byStranger, _ := stranger.Encrypt(ctx, []byte("x"), []byte("ad"))
	_, err = chain.Decrypt(ctx, byStranger, []byte("ad"))
	var ae keyring.AuthError
	if err == nil || !errors.As(err, &ae) || !ae.AuthFailure() {
		t.Errorf("chain.Decrypt(wrap by no KEK of the chain) err = %v, want an AuthFailure", err)
	}
	// One KEK down: an unknown wrap is reported as "could not ask", not as
	// the wrong key, so the keyring does not call the master key wrong.
	_, err = keyring.NewChain(cur, unreachableKEK{}).Decrypt(ctx, byStranger, []byte("ad"))
	if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("chain with a KEK down: Decrypt err = %v, want a non-auth error naming the outage", err)
	}
	if b, id := keyring.Describe(chain); b != "local" || id != cur.(keyring.KEKDescriber).KEKKeyID() {
		t.Errorf("Describe(chain) = %s %s, want the current KEK's", b, id)
	}
	if got := keyring.KEKsOf(chain); len(got) != 2 || got[0] != cur || got[1] != old {
		t.Errorf("KEKsOf(chain) = %v, want current then previous", got)
	}
	if _, ok := keyring.RotatorOf(chain); ok {
		t.Error("RotatorOf(chain of local KEKs) ok = true, want false (a local key does not rotate in place)")
	}
}

func TestInstrumentedCountsPerBackendAndResult(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	k, err := keyring.Instrument(localKEK(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := k.Encrypt(ctx, []byte("x"), []byte("ad"))
	_, _ = k.Decrypt(ctx, ct, []byte("ad"))
	_, _ = k.Decrypt(ctx, ct, []byte("other ad"))
	_ = k.CheckHealth(ctx)
	d, _ := keyring.Instrument(unreachableKEK{}, reg) // same registry: counters shared
	_, _ = d.Encrypt(ctx, []byte("x"), nil)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"local", "wrap", "ok"}, 1},
		{[]string{"local", "unwrap", "ok"}, 1},
		{[]string{"local", "unwrap", "auth_failure"}, 1},
		{[]string{"local", "health", "ok"}, 1},
		{[]string{"keyring_test.unreachableKEK", "wrap", "error"}, 1},
	} {
		if got := counterValue(t, reg, c.labels...); got != c.want {
			t.Errorf("vectabase_kek_operations_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "vectabase_kek_operation_duration_seconds"); n == 0 {
		t.Error("no vectabase_kek_operation_duration_seconds series")
	}
}

// counterValue reads vectabase_kek_operations_total{backend,op,result}.
func counterValue(t *testing.T, reg *prometheus.Registry, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vectabase_kek_operations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if got["backend"] == labels[0] && got["op"] == labels[1] && got["result"] == labels[2] {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// transitLike is a KEK whose ciphertexts look like Vault transit's
// ("vault:v3:..."), over a local key.
type transitLike struct{ keyring.KEK }

func (k transitLike) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	ct, err := k.KEK.Encrypt(ctx, pt, ad)
	return append([]byte("vault:v3:"), ct...), err
}

func (k transitLike) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	rest, _ := strings.CutPrefix(string(ct), "vault:v3:")
	return k.KEK.Decrypt(ctx, []byte(rest), ad)
}

// Status names the key version of a wrap when the wrap carries one.
func TestStatusShowsTheWrapKeyVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := kektest.NewMemStore()
	kr, err := keyring.Open(ctx, st, transitLike{localKEK(t)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := kr.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range s.Keysets {
		if ks.KEKKeyVersion != "v3" {
			t.Errorf("keyset %s KEKKeyVersion = %q, want v3", ks.Name, ks.KEKKeyVersion)
		}
	}
	kr2, err := keyring.Open(ctx, kektest.NewMemStore(), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := kr2.Status(ctx); s.Keysets[0].KEKKeyVersion != "" {
		t.Errorf("local wrap KEKKeyVersion = %q, want none", s.Keysets[0].KEKKeyVersion)
	}
}
