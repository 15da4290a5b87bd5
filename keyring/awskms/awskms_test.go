package awskms_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/awskms"
	"github.com/vectabase/vectabase/keyring/awskms/localkms"
	"github.com/vectabase/vectabase/keyring/kektest"
)

func newKEK(t testing.TB, c *kms.Client, key string) *awskms.KEK {
	t.Helper()
	k, err := awskms.New(context.Background(), awskms.Config{KeyID: key, Client: c})
	if err != nil {
		t.Fatalf("awskms.New(%s) err = %v, want nil", key, err)
	}
	return k
}

// TestConformance runs the shared KEK suite against local-kms: alias/vectabase
// is the key, alias/other the wrong key, DisableKey disables it and a
// stopped local-kms is the backend down.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := localkms.Start(t)
	c := srv.Client()
	kektest.RunBackend(t, kektest.Backend{
		New:   func() keyring.KEK { return newKEK(t, c, "alias/vectabase") },
		Other: func() keyring.KEK { return newKEK(t, c, "alias/other") },
		Disable: func(t *testing.T) func() {
			ctx := context.Background()
			if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(localkms.KeyA)}); err != nil {
				t.Fatalf("DisableKey: %v", err)
			}
			return func() {
				if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(localkms.KeyA)}); err != nil {
					t.Fatalf("EnableKey: %v", err)
				}
			}
		},
		Down: func(t *testing.T) keyring.KEK {
			other := localkms.Start(t)
			k := newKEK(t, other.Client(), "alias/vectabase")
			other.Close()
			return k
		},
	})
}

// TestEncryptionContextIsTheAssociatedData checks that KMS itself enforces
// the binding: the KMS blob inside a wrap decrypts only with the encryption
// context naming the same associated data.
func TestEncryptionContextIsTheAssociatedData(t *testing.T) {
	t.Parallel()
	srv := localkms.Start(t)
	c := srv.Client()
	ctx := context.Background()
	k := newKEK(t, c, "alias/vectabase")
	ct, err := k.Encrypt(ctx, []byte("keyset"), []byte("vectabase/keyring/keyset/data"))
	if err != nil {
		t.Fatal(err)
	}
	n := int(ct[1])<<8 | int(ct[2])
	blob := ct[3 : 3+n]
	for _, ec := range []map[string]string{nil, {awskms.ContextKey: "vectabase/keyring/keyset/index"}} {
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec}); err == nil {
			t.Errorf("KMS Decrypt with encryption context %v err = nil, want a refusal", ec)
		}
	}
	if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob,
		EncryptionContext: map[string]string{awskms.ContextKey: "vectabase/keyring/keyset/data"}}); err != nil {
		t.Errorf("KMS Decrypt with the keyset's encryption context err = %v, want nil", err)
	}
	if got := k.KEKKeyID(); !strings.HasSuffix(got, localkms.KeyA) {
		t.Errorf("KEKKeyID() = %q, want the key's ARN", got)
	}
}

func TestNewRefusesAMissingKey(t *testing.T) {
	t.Parallel()
	srv := localkms.Start(t)
	_, err := awskms.New(context.Background(), awskms.Config{KeyID: "alias/missing", Client: srv.Client()})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("New(alias/missing) err = %v, want a not-found error", err)
	}
}
