package vaulttest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/builtin/logical/transit"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/vault"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/hcvault"
	"github.com/vectabase/vectabase/keyring/kektest"
	"github.com/vectabase/vectabase/policies"
)

// startVault starts a one-node in-process Vault with transit mounted at
// "transit" and an aes256-gcm96 key "vectabase", and returns a root client.
func startVault(t *testing.T) (*vault.TestCluster, *api.Client) {
	t.Helper()
	cluster := vault.NewTestCluster(t, &vault.CoreConfig{
		LogicalBackends: map[string]logical.Factory{"transit": transit.Factory},
	}, &vault.TestClusterOptions{
		HandlerFunc: vaulthttp.Handler,
		NumCores:    1,
	})
	cluster.Start()
	t.Cleanup(cluster.Cleanup)
	client := cluster.Cores[0].Client
	if err := client.Sys().Mount("transit", &api.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("mount transit: %v", err)
	}
	if _, err := client.Logical().Write("transit/keys/vectabase", map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatalf("create transit key: %v", err)
	}
	return cluster, client
}

// tokenClient returns a client of the same Vault logged in with a new token
// carrying only the given policies.
func tokenClient(t *testing.T, root *api.Client, policies ...string) (*api.Client, string) {
	t.Helper()
	sec, err := root.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: policies, NoDefaultPolicy: true, TTL: "1h", Renewable: boolPtr(true),
	})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	c, err := root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(sec.Auth.ClientToken)
	return c, sec.Auth.ClientToken
}

func boolPtr(b bool) *bool { return &b }

// TestTransitKEK runs the shared KEK suite against Vault transit, with a
// token holding only the least-privilege policy from policies/.
func TestTransitKEK(t *testing.T) {
	ctx := context.Background()
	_, root := startVault(t)
	if err := root.Sys().PutPolicy("vectabase-transit", policies.VaultTransitPolicy()); err != nil {
		t.Fatalf("write policy: %v", err)
	}
	client, _ := tokenClient(t, root, "vectabase-transit")
	if _, err := root.Logical().Write("transit/keys/other", map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatalf("create transit key: %v", err)
	}
	open := func(t *testing.T, c *api.Client, key string) keyring.KEK {
		kek, err := hcvault.New(ctx, hcvault.Config{Client: c, Key: key})
		if err != nil {
			t.Fatalf("hcvault.New(%s) err = %v, want nil", key, err)
		}
		t.Cleanup(func() { kek.Close() })
		return kek
	}
	kektest.RunBackend(t, kektest.Backend{
		New: func() keyring.KEK { return open(t, client, "vectabase") },
		// The least-privilege policy names only "vectabase"; the other
		// key is reached with the root token.
		Other: func() keyring.KEK { return open(t, root, "other") },
		// Transit keys cannot be disabled; what an operator does is take
		// the policy away from Vectabase's token.
		Disable: func(t *testing.T) func() {
			if err := root.Sys().PutPolicy("vectabase-transit", `path "sys/nothing" { capabilities = ["deny"] }`); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := root.Sys().PutPolicy("vectabase-transit", policies.VaultTransitPolicy()); err != nil {
					t.Fatal(err)
				}
			}
		},
		Down: func(t *testing.T) keyring.KEK {
			cluster, c := startVault(t)
			kek := open(t, c, "vectabase")
			cluster.Cleanup()
			return kek
		},
		RotateKey: func(t *testing.T) {
			if err := open(t, root, "vectabase").(*hcvault.KEK).RotateKey(ctx); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestRotateTransitKey: after Vault rotates the transit key and the keyring
// re-wraps, the keysets are wrapped by the new key version and data written
// before still decrypts after a restart.
func TestRotateTransitKey(t *testing.T) {
	ctx := context.Background()
	_, root := startVault(t)
	if err := root.Sys().PutPolicy("vectabase-transit", policies.VaultTransitPolicy()); err != nil {
		t.Fatalf("write policy: %v", err)
	}
	client, _ := tokenClient(t, root, "vectabase-transit")
	kek, err := hcvault.New(ctx, hcvault.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer kek.Close()
	st := kektest.NewMemStore()
	kr, err := keyring.Open(ctx, st, kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v", err)
	}
	loc := keyring.Location{Table: "secret_versions", Column: "value", RowID: "1"}
	ct, err := kr.Encrypt(ctx, loc, []byte("sk_live_123"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kek.RotateKey(ctx); err != nil {
		t.Fatalf("RotateKey err = %v, want nil (policy allows rotate)", err)
	}
	if err := kr.RotateKEK(ctx, kek); err != nil {
		t.Fatalf("RotateKEK err = %v", err)
	}
	ks, _ := st.Get(keyring.KeysetData)
	if !bytes.Contains(ks.Wrapped, []byte("vault:v2:")) {
		t.Errorf("data keyset after RotateKEK is not wrapped by transit key version 2")
	}
	kr2, err := keyring.Open(ctx, st, kek)
	if err != nil {
		t.Fatalf("keyring.Open after rotation err = %v", err)
	}
	if got, err := kr2.Decrypt(ctx, loc, ct); err != nil || string(got) != "sk_live_123" {
		t.Fatalf("Decrypt after transit rotation = %q, %v", got, err)
	}
}

// TestStartFailures: a token without the policy, a missing key, and a Vault
// that has gone away each fail at New with their cause and without the token.
func TestStartFailures(t *testing.T) {
	ctx := context.Background()
	cluster, root := startVault(t)
	if err := root.Sys().PutPolicy("nothing", `path "secret/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	denied, deniedToken := tokenClient(t, root, "nothing")

	check := func(name string, c *api.Client, cfg hcvault.Config, want string) {
		t.Helper()
		cfg.Client = c
		_, err := hcvault.New(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: hcvault.New err = %v, want one containing %q", name, err, want)
			return
		}
		for _, tok := range []string{deniedToken, root.Token()} {
			if strings.Contains(err.Error(), tok) {
				t.Errorf("%s: hcvault.New err = %q shows a token", name, err)
			}
		}
	}
	check("token denied", denied, hcvault.Config{}, "denied the token")
	check("key missing", root, hcvault.Config{Key: "missing"}, "transit key transit/keys/missing not found")

	// A keyring opened, then Vault goes away: re-wrapping fails clearly and
	// the keys in memory keep working.
	kek, err := hcvault.New(ctx, hcvault.Config{Client: root})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, kektest.NewMemStore(), kek)
	if err != nil {
		t.Fatal(err)
	}
	cluster.Cleanup()
	// A stopping test cluster may still answer 503 for a moment, or
	// refuse connections: either is reported as Vault being down.
	down, _ := root.Clone()
	down.SetToken(root.Token())
	down.SetMaxRetries(0)
	down.SetAddress("https://127.0.0.1:1")
	check("vault down", down, hcvault.Config{}, "is unreachable")
	_, err = kr.RotateDEK(ctx)
	if err == nil || !(strings.Contains(err.Error(), "is unreachable") || strings.Contains(err.Error(), "is sealed or unavailable")) {
		t.Errorf("RotateDEK with Vault stopped err = %v, want an unreachable or unavailable error", err)
	}
	loc := keyring.Location{Table: "t", Column: "c", RowID: "r"}
	ct, err := kr.Encrypt(ctx, loc, []byte("v"))
	if err != nil {
		t.Fatalf("Encrypt with Vault down err = %v, want nil (no KEK call per data op)", err)
	}
	if _, err := kr.Decrypt(ctx, loc, ct); err != nil {
		t.Fatalf("Decrypt with Vault down err = %v, want nil", err)
	}
}

// TestTokenRenewal: a renewable token outlives its TTL while the KEK is
// open, because the KEK renews it. The watcher renews at about two thirds
// of the TTL, so the slack before expiry is a third of it: with a 30 s TTL
// a busy machine has 10 s to run the renewal, where a 3 s TTL left it one
// (and failed at load average 20). The test waits for the renewal it sees
// in Vault (the token's expiry moved past the first one by more than half
// a TTL: a scheduled renewal, not only the one at start), not for a clock.
func TestTokenRenewal(t *testing.T) {
	ctx := context.Background()
	_, root := startVault(t)
	if err := root.Sys().PutPolicy("vectabase-transit", policies.VaultTransitPolicy()); err != nil {
		t.Fatal(err)
	}
	const ttl = 30 * time.Second
	sec, err := root.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{"vectabase-transit"}, NoDefaultPolicy: true, TTL: ttl.String(), Renewable: boolPtr(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	expiry := func() time.Time {
		t.Helper()
		s, err := root.Auth().Token().LookupAccessor(sec.Auth.Accessor)
		if err != nil {
			t.Fatalf("look up the token: %v (expired before the KEK renewed it?)", err)
		}
		raw, _ := s.Data["expire_time"].(string)
		at, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			t.Fatalf("token expire_time %q: %v", raw, err)
		}
		return at
	}
	first := expiry()
	client, _ := root.Clone()
	client.SetToken(sec.Auth.ClientToken)
	kek, err := hcvault.New(ctx, hcvault.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer kek.Close()
	for deadline := time.Now().Add(3 * time.Minute); !expiry().After(first.Add(ttl / 2)); {
		if time.Now().After(deadline) {
			t.Fatalf("the token's expiry stayed at %v: the KEK did not renew it", expiry())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := kek.Encrypt(ctx, []byte("keyset"), []byte("ad")); err != nil {
		t.Fatalf("Encrypt after the renewal err = %v, want nil", err)
	}
}
