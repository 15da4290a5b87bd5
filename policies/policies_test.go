package policies_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vectabase/vectabase/policies"
)

// TestSensitiveColumnsCoverTheSchema: every column marked SENSITIVE in the
// Supabase schema, except the API key (stored as a keyed hash), plus the
// secrets' values, is listed; license keys carry a blind index.
func TestSensitiveColumnsCoverTheSchema(t *testing.T) {
	t.Parallel()
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatalf("SensitiveColumns err = %v, want nil", err)
	}
	var got []string
	for _, c := range cols {
		s := c.String()
		if c.BlindIndex != "" {
			s += " +" + c.BlindIndex
		}
		got = append(got, s)
	}
	want := []string{
		"profiles.stripe_customer_id",
		"stores.stripe_account_id +stripe_account_bidx",
		"products.download_url",
		"sales.stripe_payment_intent_id +stripe_payment_intent_bidx",
		"payment_transactions.stripe_session_id",
		"payment_transactions.stripe_payment_intent_id",
		"whitelist_users.license_key +license_key_bidx",
		"whitelist_users.hwid +hwid_bidx",
		"discord_servers.webhook_url",
		"developer_subscriptions.stripe_customer_id",
		"developer_subscriptions.stripe_subscription_id +stripe_subscription_bidx",
		"whitelist_entries.license_key +license_key_bidx",
		"whitelist_entries.hwid +hwid_bidx",
		"secret_versions.value",
		"jwt_signing_keys.private_key",
		"user_keys.keyset",
		"audit_signing_key.private_key",
		"bot_role_grants.interaction_token",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SensitiveColumns (-want +got):\n%s", diff)
	}
	plain, err := policies.NotEncryptedColumns()
	if err != nil {
		t.Fatalf("NotEncryptedColumns err = %v, want nil", err)
	}
	found := false
	for _, p := range plain {
		if p.String() == "developer_api_keys.key_hash" {
			found = true
		}
	}
	if !found {
		t.Error("NotEncryptedColumns lacks developer_api_keys.key_hash")
	}
}

func TestVaultTransitPolicy(t *testing.T) {
	t.Parallel()
	p := policies.VaultTransitPolicy()
	for _, path := range []string{"transit/encrypt/vectabase", "transit/decrypt/vectabase", "transit/keys/vectabase", "auth/token/renew-self", "auth/token/lookup-self"} {
		if !strings.Contains(p, `path "`+path+`"`) {
			t.Errorf("Vault policy lacks path %q", path)
		}
	}
	if strings.Contains(p, "*") || strings.Contains(p, "sudo") {
		t.Error("Vault policy has a wildcard or sudo; want least privilege")
	}
}
