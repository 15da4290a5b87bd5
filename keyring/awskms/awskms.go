// Package awskms is the keyring's KEK on AWS KMS: a symmetric KMS key wraps
// and unwraps the serialized keysets (and backup keys), and only those.
// Field data never goes to AWS. Credentials and region come from the
// standard AWS configuration chain (AWS_REGION, AWS_PROFILE, the shared
// config files, web identity, the instance role, ...), and
// AWS_ENDPOINT_URL_KMS (or AWS_ENDPOINT_URL) points the client at another
// endpoint, such as a VPC endpoint or local-kms in tests.
//
// The associated data becomes the KMS encryption context, so a wrapped
// keyset is bound to its name in KMS's own audit trail (CloudTrail) and an
// IAM condition can restrict the key to Vectabase's contexts (see
// policies/aws/vectabase-kms.json).
package awskms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/vectabase/vectabase/keyring"
)

var _ keyring.KEK = (*KEK)(nil)
var _ keyring.KEKDescriber = (*KEK)(nil)

// Encryption context keys. Associated data that is valid UTF-8 (every
// associated data the keyring and backups use) goes in as text under
// ContextKey, so IAM conditions can match it; any other bytes go in as
// base64 under ContextKeyBinary. Two keys keep the mapping one-to-one.
const (
	ContextKey       = "vectabase-aad"
	ContextKeyBinary = "vectabase-aad-b64"
)

// Config names the KMS key.
type Config struct {
	// KeyID is the key's id, ARN, alias name ("alias/vectabase") or alias
	// ARN (AWS_KMS_KEY_ID).
	KeyID string
	// Client is the KMS client to use. When nil, New makes one from the
	// standard AWS configuration chain.
	Client *kms.Client
}

// KEK wraps keysets with a symmetric AWS KMS key.
type KEK struct {
	client *kms.Client
	keyID  string // as configured; sent with every call
	arn    string // the key's ARN, from DescribeKey
}

// authError is a decrypt KMS refused for the ciphertext itself (another
// key, altered data or encryption context); the keyring reports it as a
// wrong KEK rather than an unreachable one.
type authError struct{ msg string }

func (e authError) Error() string   { return e.msg }
func (authError) AuthFailure() bool { return true }

// New makes the client (unless cfg has one) and checks, before anything is
// wrapped, that KMS answers, the credentials are accepted, and the key
// exists, is enabled and is a symmetric encryption key. Errors name the key
// and the cause, never a credential.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if cfg.KeyID == "" {
		return nil, errors.New("awskms: no key (set AWS_KMS_KEY_ID)")
	}
	client := cfg.Client
	if client == nil {
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("awskms: AWS configuration: %w", err)
		}
		if awsCfg.Region == "" {
			return nil, errors.New("awskms: no AWS region (set AWS_REGION, or use a key ARN and a profile with a region)")
		}
		client = kms.NewFromConfig(awsCfg)
	}
	k := &KEK{client: client, keyID: cfg.KeyID}
	out, err := client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(cfg.KeyID)})
	if err != nil {
		return nil, k.flatten("describe key", err)
	}
	md := out.KeyMetadata
	if md == nil {
		return nil, fmt.Errorf("awskms: describe key %s: no key metadata in the answer", cfg.KeyID)
	}
	if md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || md.KeySpec != types.KeySpecSymmetricDefault {
		return nil, fmt.Errorf("awskms: key %s is %s %s; want a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key", cfg.KeyID, md.KeySpec, md.KeyUsage)
	}
	if !md.Enabled {
		return nil, fmt.Errorf("awskms: key %s is %s, not enabled", cfg.KeyID, md.KeyState)
	}
	k.arn = aws.ToString(md.Arn)
	if k.arn == "" {
		k.arn = cfg.KeyID
	}
	return k, nil
}

// encryptionContext maps associated data to a KMS encryption context. KMS
// refuses empty values, so empty associated data is no context at all.
func encryptionContext(ad []byte) map[string]string {
	switch {
	case len(ad) == 0:
		return nil
	case utf8.Valid(ad):
		return map[string]string{ContextKey: string(ad)}
	default:
		return map[string]string{ContextKeyBinary: base64.StdEncoding.EncodeToString(ad)}
	}
}

// Encrypt wraps plaintext under a fresh 256-bit key (AES-GCM, here, bound
// to associatedData) and has KMS encrypt that key, binding associatedData
// as the encryption context: KMS's own Encrypt takes at most 4096 bytes,
// and a data keyset grows with every DEK rotation. The result is
// 0x01 || len(KMS blob) (2 bytes, big endian) || KMS blob || nonce || sealed.
func (k *KEK) Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	dk := make([]byte, 32)
	if _, err := rand.Read(dk); err != nil {
		return nil, fmt.Errorf("awskms: data key: %w", err)
	}
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(k.keyID),
		Plaintext:         dk,
		EncryptionContext: encryptionContext(associatedData),
	})
	if err != nil {
		return nil, k.flatten("encrypt", err)
	}
	blob := out.CiphertextBlob
	if len(blob) == 0 || len(blob) > 0xffff {
		return nil, fmt.Errorf("awskms: encrypt with %s: KMS answered a %d-byte ciphertext", k.arn, len(blob))
	}
	a, err := gcm(dk)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, 0, 3+len(blob)+a.NonceSize()+len(plaintext)+a.Overhead())
	ct = append(ct, formatV1)
	ct = binary.BigEndian.AppendUint16(ct, uint16(len(blob)))
	ct = append(ct, blob...)
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("awskms: nonce: %w", err)
	}
	ct = append(ct, nonce...)
	return a.Seal(ct, nonce, plaintext, associatedData), nil
}

const formatV1 = 0x01

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("awskms: %w", err)
	}
	return cipher.NewGCM(block)
}

// Decrypt unwraps a ciphertext made by Encrypt with the same key. A
// ciphertext KMS refuses (another key, altered, other associated data)
// gives an error whose AuthFailure method is true; an unreachable KMS,
// refused credentials or a disabled key do not.
func (k *KEK) Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	refused := authError{fmt.Sprintf("awskms: decrypt with %s: the ciphertext does not authenticate", k.arn)}
	if len(ciphertext) < 3 || ciphertext[0] != formatV1 {
		return nil, refused
	}
	n := int(binary.BigEndian.Uint16(ciphertext[1:3]))
	if n == 0 || len(ciphertext) < 3+n+12+16 {
		return nil, refused
	}
	blob, rest := ciphertext[3:3+n], ciphertext[3+n:]
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(k.keyID),
		CiphertextBlob:    blob,
		EncryptionContext: encryptionContext(associatedData),
	})
	if err != nil {
		var ic *types.InvalidCiphertextException
		var ik *types.IncorrectKeyException
		if errors.As(err, &ic) || errors.As(err, &ik) {
			return nil, refused
		}
		return nil, k.flatten("decrypt", err)
	}
	if len(out.Plaintext) != 32 {
		return nil, refused
	}
	a, err := gcm(out.Plaintext)
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(nil, rest[:a.NonceSize()], rest[a.NonceSize():], associatedData)
	if err != nil {
		return nil, refused
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// CheckHealth asks KMS whether the key is there and enabled (DescribeKey),
// without wrapping anything: a decrypt-only previous key may not be allowed
// to encrypt.
func (k *KEK) CheckHealth(ctx context.Context) error {
	out, err := k.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.keyID)})
	if err != nil {
		return k.flatten("describe key", err)
	}
	if out.KeyMetadata == nil || !out.KeyMetadata.Enabled {
		state := types.KeyState("unknown")
		if out.KeyMetadata != nil {
			state = out.KeyMetadata.KeyState
		}
		return fmt.Errorf("awskms: key %s is %s, not enabled", k.arn, state)
	}
	return nil
}

// KEKBackend returns "awskms".
func (k *KEK) KEKBackend() string { return "awskms" }

// KEKKeyID returns the key's ARN.
func (k *KEK) KEKKeyID() string { return k.arn }

// String names the KEK without credentials.
func (k *KEK) String() string { return "AWS KMS KEK " + k.arn }

// flatten turns an SDK error into one line naming the key and the cause:
// the KMS error code for an answer, "unreachable" for none.
func (k *KEK) flatten(what string, err error) error {
	name := k.arn
	if name == "" {
		name = k.keyID
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("awskms: %s with %s: %w", what, name, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "DisabledException", "KMSInvalidStateException":
			return fmt.Errorf("awskms: %s with %s: the key is disabled or pending deletion (%s)", what, name, ae.ErrorCode())
		case "NotFoundException":
			return fmt.Errorf("awskms: %s: key %s not found (check AWS_KMS_KEY_ID and the region)", what, name)
		case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException":
			return fmt.Errorf("awskms: %s with %s: KMS denied the credentials (%s; check the role's policy)", what, name, ae.ErrorCode())
		}
		return fmt.Errorf("awskms: %s with %s: KMS answered %s", what, name, ae.ErrorCode())
	}
	return fmt.Errorf("awskms: %s with %s: KMS is unreachable", what, name)
}
