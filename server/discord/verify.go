package discord

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// MaxClockSkew is how far an interaction's timestamp may be from our clock.
// Discord signs the timestamp with the body, so a captured request cannot be
// replayed once it is older than this.
const MaxClockSkew = 5 * time.Minute

var (
	errBadSignature = errors.New("invalid request signature")
	errStale        = errors.New("request timestamp is too old or in the future")
)

// ParsePublicKey decodes an application's public key as Discord shows it:
// 64 hex characters.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("DISCORD_PUBLIC_KEY is not a 64-character hex Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// verify checks Discord's signature: Ed25519 over timestamp || body, hex in
// X-Signature-Ed25519; and that the timestamp (Unix seconds) is within
// MaxClockSkew of now.
func verify(pub ed25519.PublicKey, sigHex, timestamp string, body []byte, now time.Time) error {
	sig, err := hex.DecodeString(sigHex)
	if err != nil || len(sig) != ed25519.SignatureSize || timestamp == "" || len(timestamp) > 20 {
		return errBadSignature
	}
	msg := make([]byte, 0, len(timestamp)+len(body))
	msg = append(append(msg, timestamp...), body...)
	if !ed25519.Verify(pub, msg, sig) {
		return errBadSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errStale
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return errStale
	}
	return nil
}
