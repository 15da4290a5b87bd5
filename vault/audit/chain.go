package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
)

// MAC purposes. The row MAC chains rows; the head MAC seals where the chain
// ends and how long it is, so deleting the newest rows is seen too.
const (
	purposeRow  = "audit"
	purposeHead = "audit_head"
)

const encodingVersion = "vectabase/audit/v1\x00"

// rowHash is MAC("audit", prev_hash || canonical row), each part length
// prefixed so no two different rows encode alike. The stored prev_hash is
// not trusted: callers pass the hash of the row before.
func rowHash(kr *keyring.Keyring, prev []byte, r store.AuditRow) ([]byte, error) {
	b := make([]byte, 0, 256+len(r.Details))
	b = append(b, encodingVersion...)
	b = appendBytes(b, prev)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(r.OccurredAt.UnixMicro()))
	for _, f := range [...]string{r.ActorType, r.ActorID, r.Action, r.ResourceType, r.ResourceID,
		r.Result, r.IP, r.RequestID} {
		b = appendBytes(b, []byte(f))
	}
	b = appendBytes(b, r.Details)
	return kr.MAC(purposeRow, b)
}

// headVersion starts the head MAC's input since the MAC covers the Merkle
// tree too, so it can never equal a MAC of the older encoding.
const headVersion = "vectabase/audit/head/v2\x00"

// headMAC is MAC("audit_head", where the chain ends, how long it is, and
// the Merkle tree's size and root): a stored tree whose size or root was
// changed no longer matches its head, as a chain whose newest rows were
// deleted does not.
func headMAC(kr *keyring.Keyring, h store.AuditHead) ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, headVersion...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.LastID))
	b = binary.BigEndian.AppendUint64(b, uint64(h.RowCount))
	b = appendBytes(b, h.LastHash)
	b = binary.BigEndian.AppendUint64(b, uint64(h.TreeSize))
	b = appendBytes(b, h.TreeRoot)
	return kr.MAC(purposeHead, b)
}

// legacyHeadMAC is the head MAC written before it covered the tree
// (migrations 00003 to 00025): it seals only the chain's end and length.
// A head sealed so is still accepted, since only the MAC key could have
// made it and writers no longer do; the first locked write after the
// upgrade seals the head with headMAC.
func legacyHeadMAC(kr *keyring.Keyring, h store.AuditHead) ([]byte, error) {
	b := make([]byte, 0, 64)
	b = append(b, encodingVersion...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.LastID))
	b = binary.BigEndian.AppendUint64(b, uint64(h.RowCount))
	b = appendBytes(b, h.LastHash)
	return kr.MAC(purposeHead, b)
}

// headSeal says how h's MAC verifies: sealCurrent (chain end, length and
// tree), sealLegacy (chain end and length only: a head from before the
// upgrade), or sealBroken.
func headSeal(kr *keyring.Keyring, h store.AuditHead) (seal, error) {
	want, err := headMAC(kr, h)
	if err != nil {
		return sealBroken, err
	}
	if hmac.Equal(want, h.MAC) {
		return sealCurrent, nil
	}
	if want, err = legacyHeadMAC(kr, h); err != nil {
		return sealBroken, err
	}
	if hmac.Equal(want, h.MAC) {
		return sealLegacy, nil
	}
	return sealBroken, nil
}

type seal int

const (
	sealBroken seal = iota
	sealCurrent
	sealLegacy
)

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// canonicalJSON returns one fixed encoding of a JSON object, so the hash of
// details written from Go matches the hash of the same details read back
// from jsonb, which reorders keys, drops whitespace and normalises numbers.
// It also removes NUL characters, which jsonb refuses.
func canonicalJSON(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("{}"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("audit: details are not JSON: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("audit: details must be a JSON object")
	}
	return json.Marshal(normalise(v))
}

func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[cleanString(k)] = normalise(e)
		}
		return out
	case []any:
		for i := range x {
			x[i] = normalise(x[i])
		}
		return x
	case string:
		return cleanString(x)
	case json.Number:
		// Every number becomes its float64 value, written as an integer
		// when it is one that float64 holds exactly, so the text Go wrote
		// and the text jsonb gives back (which drops -0, trailing zeros
		// and exponents) both land on the same spelling.
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return string(x)
		}
		if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
			return json.Number(strconv.FormatInt(int64(f), 10))
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	}
	return v
}

// cleanString makes s storable in a text or jsonb column: valid UTF-8 and
// no NUL characters.
func cleanString(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	return s
}

// MaxField bounds each text field of an audit row (many come from the
// request: resource names, ids), so a huge name in a request cannot bloat
// the trail: a longer value keeps its first MaxField bytes (whole UTF-8
// characters) followed by "…#" and the first 16 hex digits of the SHA-256
// of the whole value, so rows naming different long values stay apart.
const MaxField = 256

// Clip is what a text field becomes in an audit row: valid UTF-8 without
// NUL, and at most MaxField bytes plus the hash suffix.
func Clip(s string) string { return clip(s) }

func clip(s string) string {
	s = cleanString(s)
	if len(s) <= MaxField {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	head := s[:MaxField]
	for len(head) > 0 && !utf8.ValidString(head) {
		head = head[:len(head)-1]
	}
	return head + "…#" + hex.EncodeToString(sum[:8])
}
