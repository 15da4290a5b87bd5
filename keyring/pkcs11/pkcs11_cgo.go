//go:build cgo

package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// KEK wraps keysets with an AES key inside a PKCS#11 token. A session is
// used by one call at a time, so calls are serialised; KEK calls are rare
// (keyset loads, rotations, backups).
type KEK struct {
	mu       sync.Mutex
	ctx      *p11.Ctx
	session  p11.SessionHandle
	key      p11.ObjectHandle
	closed   bool
	token    string
	keyLabel string
}

const (
	nonceSize = 12
	tagBits   = 128
)

// open loads the module, finds the token by label, opens a session and
// logs in.
func open(cfg Config) (*p11.Ctx, p11.SessionHandle, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" {
		return nil, 0, errors.New("pkcs11: PKCS11_MODULE and PKCS11_TOKEN_LABEL are required")
	}
	pin, err := cfg.pin()
	if err != nil {
		return nil, 0, err
	}
	ctx := p11.New(cfg.Module)
	if ctx == nil {
		return nil, 0, fmt.Errorf("pkcs11: cannot load module %s", cfg.Module)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return nil, 0, fmt.Errorf("pkcs11: initialize module %s: %v", cfg.Module, err)
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, 0, fmt.Errorf("pkcs11: list slots of %s: %v", cfg.Module, err)
	}
	for _, slot := range slots {
		ti, err := ctx.GetTokenInfo(slot)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != cfg.TokenLabel {
			continue
		}
		s, err := ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		if err != nil {
			return nil, 0, fmt.Errorf("pkcs11: open a session on token %q: %v", cfg.TokenLabel, err)
		}
		if err := ctx.Login(s, p11.CKU_USER, pin); err != nil && !isCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
			_ = ctx.CloseSession(s)
			if isCode(err, p11.CKR_PIN_INCORRECT) {
				return nil, 0, fmt.Errorf("pkcs11: token %q refused the PIN (wrong PIN)", cfg.TokenLabel)
			}
			return nil, 0, fmt.Errorf("pkcs11: log in to token %q: %v", cfg.TokenLabel, err)
		}
		return ctx, s, nil
	}
	return nil, 0, fmt.Errorf("pkcs11: no token labelled %q in module %s", cfg.TokenLabel, cfg.Module)
}

func findKey(ctx *p11.Ctx, s p11.SessionHandle, label string) ([]p11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}); err != nil {
		return nil, err
	}
	objs, _, err := ctx.FindObjects(s, 2)
	if ferr := ctx.FindObjectsFinal(s); err == nil {
		err = ferr
	}
	return objs, err
}

// New opens a session on the token, logs in and finds the key, checking
// that it is one AES key allowed to encrypt and decrypt. Errors name the
// module, token and key, never the PIN.
func New(_ context.Context, cfg Config) (*KEK, error) {
	if cfg.KeyLabel == "" {
		return nil, errors.New("pkcs11: PKCS11_KEY_LABEL is required")
	}
	ctx, s, err := open(cfg)
	if err != nil {
		return nil, err
	}
	objs, err := findKey(ctx, s, cfg.KeyLabel)
	if err == nil && len(objs) != 1 {
		err = fmt.Errorf("found %d secret keys labelled %q, want exactly one (create it: vectabase keys init)", len(objs), cfg.KeyLabel)
	}
	if err != nil {
		_ = ctx.CloseSession(s)
		return nil, fmt.Errorf("pkcs11: key on token %q: %v", cfg.TokenLabel, err)
	}
	attrs, err := ctx.GetAttributeValue(s, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil)})
	if err != nil || len(attrs) != 1 || len(attrs[0].Value) == 0 || attrs[0].Value[0] != byte(p11.CKK_AES) {
		_ = ctx.CloseSession(s)
		return nil, fmt.Errorf("pkcs11: key %q on token %q is not an AES key", cfg.KeyLabel, cfg.TokenLabel)
	}
	return &KEK{ctx: ctx, session: s, key: objs[0], token: cfg.TokenLabel, keyLabel: cfg.KeyLabel}, nil
}

// GenerateKey creates the AES-256 key labelled cfg.KeyLabel on the token
// unless one exists: sensitive, never extractable, for encrypt and decrypt
// only. It reports whether it created the key.
func GenerateKey(cfg Config) (bool, error) {
	if cfg.KeyLabel == "" {
		return false, errors.New("pkcs11: PKCS11_KEY_LABEL is required")
	}
	ctx, s, err := open(cfg)
	if err != nil {
		return false, err
	}
	defer ctx.CloseSession(s) //nolint:errcheck // nothing to do about it
	objs, err := findKey(ctx, s, cfg.KeyLabel)
	if err != nil {
		return false, fmt.Errorf("pkcs11: look for key %q on token %q: %v", cfg.KeyLabel, cfg.TokenLabel, err)
	}
	if len(objs) > 0 {
		return false, nil
	}
	_, err = ctx.GenerateKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_LABEL, cfg.KeyLabel),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_MODIFIABLE, true),
	})
	if err != nil {
		return false, fmt.Errorf("pkcs11: generate key %q on token %q: %v", cfg.KeyLabel, cfg.TokenLabel, err)
	}
	return true, nil
}

func gcmMechanism(nonce, ad []byte) (*p11.GCMParams, []*p11.Mechanism) {
	params := p11.NewGCMParams(nonce, ad, tagBits)
	return params, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}
}

// Encrypt seals plaintext with AES-GCM inside the token under a random
// 12-byte nonce, binding associatedData. The result is nonce || sealed.
func (k *KEK) Encrypt(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pkcs11: nonce: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, k.errf("encrypt", errors.New("the KEK is closed"))
	}
	params, mech := gcmMechanism(nonce, associatedData)
	defer params.Free()
	if err := k.ctx.EncryptInit(k.session, mech, k.key); err != nil {
		return nil, k.errf("encrypt", err)
	}
	ct, err := k.ctx.Encrypt(k.session, plaintext)
	if err != nil {
		return nil, k.errf("encrypt", err)
	}
	return append(nonce, ct...), nil
}

// Decrypt opens a ciphertext made by Encrypt. A ciphertext the token does
// not authenticate (another key, altered data or associated data) gives an
// error whose AuthFailure method is true; a lost session, a locked-out
// token or a key no longer allowed to decrypt do not.
func (k *KEK) Decrypt(_ context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	refused := authError{fmt.Sprintf("pkcs11: decrypt with key %q on token %q: the ciphertext does not authenticate", k.keyLabel, k.token)}
	if len(ciphertext) < nonceSize+tagBits/8 {
		return nil, refused
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, k.errf("decrypt", errors.New("the KEK is closed"))
	}
	params, mech := gcmMechanism(ciphertext[:nonceSize], associatedData)
	defer params.Free()
	if err := k.ctx.DecryptInit(k.session, mech, k.key); err != nil {
		return nil, k.errf("decrypt", err)
	}
	pt, err := k.ctx.Decrypt(k.session, ciphertext[nonceSize:])
	if err != nil {
		// DecryptInit accepted the session and the key, so a failure of
		// the decryption itself is the tag not verifying: PKCS#11 v2.40
		// says CKR_ENCRYPTED_DATA_INVALID, SoftHSM2 says
		// CKR_GENERAL_ERROR.
		if isCode(err, p11.CKR_ENCRYPTED_DATA_INVALID) || isCode(err, p11.CKR_ENCRYPTED_DATA_LEN_RANGE) ||
			isCode(err, p11.CKR_GENERAL_ERROR) {
			return nil, refused
		}
		return nil, k.errf("decrypt", err)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// CheckHealth asks the token whether the session is alive and the key may
// still encrypt and decrypt, without wrapping anything.
func (k *KEK) CheckHealth(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return k.errf("health check", errors.New("the KEK is closed"))
	}
	if _, err := k.ctx.GetSessionInfo(k.session); err != nil {
		return k.errf("health check", err)
	}
	attrs, err := k.ctx.GetAttributeValue(k.session, k.key, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ENCRYPT, nil), p11.NewAttribute(p11.CKA_DECRYPT, nil),
	})
	if err != nil {
		return k.errf("health check", err)
	}
	for _, a := range attrs {
		if len(a.Value) == 0 || a.Value[0] == 0 {
			return k.errf("health check", errors.New("the key may no longer encrypt or decrypt"))
		}
	}
	return nil
}

// Close logs the session out of the token and closes it.
func (k *KEK) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	return k.ctx.CloseSession(k.session)
}

// KEKBackend returns "pkcs11".
func (k *KEK) KEKBackend() string { return "pkcs11" }

// KEKKeyID returns "<token label>/<key label>".
func (k *KEK) KEKKeyID() string { return k.token + "/" + k.keyLabel }

// String names the KEK without the PIN.
func (k *KEK) String() string { return "PKCS#11 KEK " + k.KEKKeyID() }

func (k *KEK) errf(what string, err error) error {
	return fmt.Errorf("pkcs11: %s with key %q on token %q: %v", what, k.keyLabel, k.token, err)
}

func isCode(err error, code uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == code
}
