package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/streamingaead"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/vectabase/vectabase/keyring"
)

// A backup file, all integers big-endian:
//
//	header   magic "VBBACKUP", format version uint16,
//	         id (uint16 length + bytes), KEK description (uint16 + bytes),
//	         KEK parameters (uint16 + bytes: a passphrase KEK's salt),
//	         backup key (uint32 length + Tink keyset encrypted by the KEK,
//	         associated data "vectabase/backup/key/" + id)
//	body     pg_dump -Fc output, Tink streaming AEAD (AES256_GCM_HKDF_1MB)
//	         under the backup key, associated data = the header bytes
//	manifest JSON (plaintext, so list needs no KEK)
//	tag      streaming AEAD ciphertext of nothing, associated data =
//	         "manifest" + header + manifest: a MAC over both
//	trailer  manifest length uint32, tag length uint32, magic "VBBAKEND"
//
// The manifest goes after the body because its checksum, size and body
// length are known only once the dump has streamed through; putting it
// first would need a second copy of the whole encrypted body. Every byte is
// covered: the header by the key's associated data and the body's and tag's,
// the body by its segments' tags, the manifest by the tag, and the trailer's
// lengths by where they make the manifest start (a wrong length gives a
// manifest that fails the tag).
const (
	magic        = "VBBACKUP"
	endMagic     = "VBBAKEND"
	formatV1     = 1
	trailerSize  = 4 + 4 + 8 // lengths and endMagic
	maxHeader    = 64 << 10
	maxManifest  = 4 << 20
	maxTag       = 4 << 10
	fileSuffix   = ".vbak"
	keyADPrefix  = "vectabase/backup/key/"
	manifestADID = "vectabase/backup/manifest"
)

// ErrCorrupt is wrapped by every error about a backup file that is not what
// it claims: altered, truncated, or not a backup at all.
var ErrCorrupt = errors.New("backup file is corrupt or was altered")

// ErrWrongKEK is wrapped when the configured KEK cannot unwrap the backup
// key: the backup was made under another KEK (or its header was altered).
var ErrWrongKEK = errors.New("the configured KEK cannot unwrap this backup's key")

// idPattern is the shape of backup ids: a UTC time and a random suffix, so
// ids sort by time and can never name a path outside the backup directory.
var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// ValidID reports whether id has the shape of a backup id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Manifest describes the dump inside a backup. It is authenticated by the
// backup key but not secret: it holds counts and checksums, no values.
type Manifest struct {
	ID               string           `json:"id"`
	CreatedAt        time.Time        `json:"createdAt"`
	DumpSize         int64            `json:"size"`          // bytes of the pg_dump output
	DumpSHA256       string           `json:"sha256"`        // of the pg_dump output, hex
	BodySize         int64            `json:"encryptedSize"` // bytes of the encrypted dump in the file
	SchemaVersion    int64            `json:"schemaVersion"`
	RowCounts        map[string]int64 `json:"rowCounts"`
	VectabaseVersion string           `json:"vectabaseVersion"`
	PostgresVersion  string           `json:"postgresVersion"`
	// Kind is KindScheduled or KindManual. Files made before kinds existed
	// have none and count as manual: retention never deletes them.
	Kind string `json:"kind,omitempty"`
}

// Kinds of backup: retention (BACKUP_KEEP) counts and deletes scheduled
// backups only; manual ones (backup create, POST /api/admin/backups) stay
// until deleted.
const (
	KindScheduled = "scheduled"
	KindManual    = "manual"
)

// header is the parsed fixed part of a backup file.
type header struct {
	raw        []byte // the header's bytes, associated data of the body
	version    uint16
	id         string
	kek        string // "backend:keyID" of the KEK that wrapped the key, or ""
	kekParams  []byte // what derives the KEK besides its secret (a salt), or nil
	wrappedKey []byte
}

func encodeHeader(id, kek string, kekParams, wrappedKey []byte) []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	_ = binary.Write(&b, binary.BigEndian, uint16(formatV1))
	_ = binary.Write(&b, binary.BigEndian, uint16(len(id)))
	b.WriteString(id)
	_ = binary.Write(&b, binary.BigEndian, uint16(len(kek)))
	b.WriteString(kek)
	_ = binary.Write(&b, binary.BigEndian, uint16(len(kekParams)))
	b.Write(kekParams)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(wrappedKey)))
	b.Write(wrappedKey)
	return b.Bytes()
}

// readHeader parses the header at the start of r.
func readHeader(r io.Reader) (header, error) {
	var h header
	var raw bytes.Buffer
	tr := io.TeeReader(io.LimitReader(r, maxHeader), &raw)
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(tr, m); err != nil || string(m) != magic {
		return h, fmt.Errorf("not a vectabase backup (no %q magic): %w", magic, ErrCorrupt)
	}
	if err := binary.Read(tr, binary.BigEndian, &h.version); err != nil {
		return h, fmt.Errorf("header truncated: %w", ErrCorrupt)
	}
	if h.version != formatV1 {
		return h, fmt.Errorf("backup format version %d is not supported by this vectabase (it reads version %d): %w", h.version, formatV1, ErrCorrupt)
	}
	id, err := readField16(tr)
	if err != nil {
		return h, err
	}
	kek, err := readField16(tr)
	if err != nil {
		return h, err
	}
	if h.kekParams, err = readField16(tr); err != nil {
		return h, err
	}
	var n uint32
	if err := binary.Read(tr, binary.BigEndian, &n); err != nil || n > maxHeader {
		return h, fmt.Errorf("header truncated or key length invalid: %w", ErrCorrupt)
	}
	h.wrappedKey = make([]byte, n)
	if _, err := io.ReadFull(tr, h.wrappedKey); err != nil {
		return h, fmt.Errorf("header truncated: %w", ErrCorrupt)
	}
	h.id, h.kek = string(id), string(kek)
	if !ValidID(h.id) {
		return h, fmt.Errorf("header holds no valid backup id: %w", ErrCorrupt)
	}
	h.raw = raw.Bytes()
	return h, nil
}

func readField16(r io.Reader) ([]byte, error) {
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, fmt.Errorf("header truncated: %w", ErrCorrupt)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("header truncated: %w", ErrCorrupt)
	}
	return b, nil
}

func encodeTrailer(manifestLen, tagLen int) []byte {
	b := make([]byte, 0, trailerSize)
	b = binary.BigEndian.AppendUint32(b, uint32(manifestLen))
	b = binary.BigEndian.AppendUint32(b, uint32(tagLen))
	return append(b, endMagic...)
}

func decodeTrailer(b []byte) (manifestLen, tagLen int64, err error) {
	if len(b) != trailerSize || string(b[8:]) != endMagic {
		return 0, 0, fmt.Errorf("the end of the file is missing (truncated?): %w", ErrCorrupt)
	}
	manifestLen = int64(binary.BigEndian.Uint32(b[0:4]))
	tagLen = int64(binary.BigEndian.Uint32(b[4:8]))
	if manifestLen > maxManifest || tagLen > maxTag {
		return 0, 0, fmt.Errorf("trailer lengths are out of range: %w", ErrCorrupt)
	}
	return manifestLen, tagLen, nil
}

func manifestAD(hdr, manifest []byte) []byte {
	ad := make([]byte, 0, len(manifestADID)+len(hdr)+len(manifest))
	ad = append(ad, manifestADID...)
	ad = append(ad, hdr...)
	return append(ad, manifest...)
}

// manifestTag is the streaming AEAD ciphertext of an empty plaintext with
// the header and manifest as associated data: only the backup key makes it.
func manifestTag(s tink.StreamingAEAD, hdr, manifest []byte) ([]byte, error) {
	var b bytes.Buffer
	w, err := s.NewEncryptingWriter(&b, manifestAD(hdr, manifest))
	if err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func checkManifestTag(s tink.StreamingAEAD, hdr, manifest, tag []byte) error {
	r, err := s.NewDecryptingReader(bytes.NewReader(tag), manifestAD(hdr, manifest))
	if err != nil {
		return fmt.Errorf("manifest tag: %w", ErrCorrupt)
	}
	if n, err := io.Copy(io.Discard, r); err != nil || n != 0 {
		return fmt.Errorf("the manifest or header does not match its tag: %w", ErrCorrupt)
	}
	return nil
}

func decodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("manifest is not valid JSON: %w", ErrCorrupt)
	}
	return m, nil
}

// kekAEAD adapts a keyring.KEK to Tink's AEADWithContext, keeping the KEK's
// own error so a KMS outage is told apart from a wrong key.
type kekAEAD struct {
	kek keyring.KEK
	err error
}

func (a *kekAEAD) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	ct, err := a.kek.Encrypt(ctx, pt, ad)
	a.err = err
	return ct, err
}

func (a *kekAEAD) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	pt, err := a.kek.Decrypt(ctx, ct, ad)
	a.err = err
	return pt, err
}

// newBackupKey makes a fresh streaming AEAD keyset for one backup and
// returns it with its KEK-wrapped serialization.
func newBackupKey(ctx context.Context, kek keyring.KEK, tmpl *tinkpb.KeyTemplate, id string) (tink.StreamingAEAD, []byte, error) {
	h, err := keyset.NewHandle(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: new key: %w", err)
	}
	var buf bytes.Buffer
	a := &kekAEAD{kek: kek}
	if err := h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), a, []byte(keyADPrefix+id)); err != nil {
		if a.err != nil {
			err = a.err
		}
		return nil, nil, fmt.Errorf("backup: the KEK cannot wrap the backup key: %w", err)
	}
	s, err := streamingaead.New(h)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	return s, buf.Bytes(), nil
}

// openBackupKey unwraps a backup's key with the KEK.
func openBackupKey(ctx context.Context, kek keyring.KEK, h header) (tink.StreamingAEAD, error) {
	s, _, err := openBackupKeyset(ctx, kek, h)
	return s, err
}

// wrapBackupKey wraps a backup's keyset under kek, bound to backup id.
func wrapBackupKey(ctx context.Context, kek keyring.KEK, h *keyset.Handle, id string) ([]byte, error) {
	var buf bytes.Buffer
	a := &kekAEAD{kek: kek}
	if err := h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), a, []byte(keyADPrefix+id)); err != nil {
		if a.err != nil {
			err = a.err
		}
		return nil, fmt.Errorf("backup: the KEK cannot wrap the backup key: %w", err)
	}
	return buf.Bytes(), nil
}

// openBackupKeyset unwraps a backup's key with the KEK and returns it both
// as a primitive and as the keyset (to wrap again under another KEK).
func openBackupKeyset(ctx context.Context, kek keyring.KEK, h header) (tink.StreamingAEAD, *keyset.Handle, error) {
	a := &kekAEAD{kek: kek}
	ks, err := keyset.ReadWithContext(ctx, keyset.NewBinaryReader(bytes.NewReader(h.wrappedKey)), a, []byte(keyADPrefix+h.id))
	if err != nil {
		var ae keyring.AuthError
		if a.err != nil && !(errors.As(a.err, &ae) && ae.AuthFailure()) {
			// Not "wrong key" but "cannot ask": a KMS outage or a
			// cancelled context says nothing about this backup.
			return nil, nil, fmt.Errorf("backup %s: the KEK is unavailable: %w", h.id, a.err)
		}
		mine := describeKEK(kek)
		if h.kek != "" && mine != "" && h.kek != mine {
			return nil, nil, fmt.Errorf("backup %s was made under KEK %s, but the configured KEK is %s: %w", h.id, h.kek, mine, ErrWrongKEK)
		}
		return nil, nil, fmt.Errorf("backup %s: %w (or its header was altered)", h.id, ErrWrongKEK)
	}
	s, err := streamingaead.New(ks)
	if err != nil {
		return nil, nil, fmt.Errorf("backup %s: the unwrapped key is not a streaming AEAD key: %w", h.id, ErrCorrupt)
	}
	return s, ks, nil
}

// describeKEK names a KEK by backend and key id ("local:3f2a…"), which
// identify it without revealing it.
func describeKEK(kek keyring.KEK) string {
	d, ok := kek.(keyring.KEKDescriber)
	if !ok {
		return ""
	}
	return d.KEKBackend() + ":" + d.KEKKeyID()
}
