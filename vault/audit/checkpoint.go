package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
)

// Every is when checkpoints are signed (AUDIT_CHECKPOINT_EVERY): after
// Rows new rows, or after Interval if the log grew, whichever comes first.
// Its text is a comma-separated list of at most one row count (a positive
// integer, "1000") and one Go duration ("1m", "30s"), or "off". The zero
// Every signs no checkpoints by itself.
type Every struct {
	Rows     int64
	Interval time.Duration
}

// UnmarshalText parses the syntax above.
func (e *Every) UnmarshalText(b []byte) error {
	*e = Every{}
	s := strings.TrimSpace(string(b))
	if s == "" || s == "off" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if n, err := strconv.ParseInt(part, 10, 64); err == nil {
			if n <= 0 || e.Rows != 0 {
				return fmt.Errorf("AUDIT_CHECKPOINT_EVERY: %q: one positive row count at most", s)
			}
			e.Rows = n
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil || d < time.Second || e.Interval != 0 {
			return fmt.Errorf("AUDIT_CHECKPOINT_EVERY: %q: want a row count and/or a duration of at least 1s, e.g. 1000,1m", s)
		}
		e.Interval = d
	}
	return nil
}

// String is the syntax UnmarshalText reads.
func (e Every) String() string {
	var parts []string
	if e.Rows > 0 {
		parts = append(parts, strconv.FormatInt(e.Rows, 10))
	}
	if e.Interval > 0 {
		parts = append(parts, e.Interval.String())
	}
	if len(parts) == 0 {
		return "off"
	}
	return strings.Join(parts, ",")
}

// CheckpointConfig configures signed checkpoints, filled from the
// environment in cmd/.
type CheckpointConfig struct {
	Every Every `env:"AUDIT_CHECKPOINT_EVERY" envDefault:"1000,1m"`
	// Origin names the log on the checkpoints' first line and the signing
	// key. Used only when the key is created; empty: vectabase/audit/<random>.
	Origin string `env:"AUDIT_LOG_ORIGIN"`
	// WitnessDir receives each new checkpoint as a file named by its tree
	// size, never overwritten.
	WitnessDir string `env:"AUDIT_WITNESS_DIR"`
	// WitnessURLs receive each new checkpoint as a POST (text/plain).
	WitnessURLs []string `env:"AUDIT_WITNESS_URLS" envSeparator:","`
}

// signingKeyLocation binds the wrapped signer key to its row.
var signingKeyLocation = keyring.Location{Table: "audit_signing_key", Column: "private_key", RowID: "1"}

// Checkpointer signs checkpoints of the audit Merkle tree with the audit
// note key, stores them and publishes new ones to the witnesses.
type Checkpointer struct {
	db     *store.DB
	kr     *keyring.Keyring
	cfg    CheckpointConfig
	log    zerolog.Logger
	client *http.Client

	mu       sync.Mutex
	signer   note.Signer
	origin   string
	verifier string
}

// NewCheckpointer returns a Checkpointer; the key is loaded (or created)
// on first use.
func NewCheckpointer(db *store.DB, kr *keyring.Keyring, cfg CheckpointConfig, log zerolog.Logger) *Checkpointer {
	return &Checkpointer{db: db, kr: kr, cfg: cfg, log: log, client: &http.Client{Timeout: 10 * time.Second}}
}

// key loads the signing key, creating it on first use.
func (c *Checkpointer) key(ctx context.Context) (note.Signer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signer != nil {
		return c.signer, nil
	}
	k, err := c.db.AuditSigningKey(ctx)
	if errors.Is(err, store.ErrNotFound) {
		k, err = c.createKey(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	skey, err := c.kr.Decrypt(ctx, signingKeyLocation, k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	s, err := note.NewSigner(string(skey))
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	c.signer, c.origin, c.verifier = s, k.Origin, k.VerifierKey
	return s, nil
}

func (c *Checkpointer) createKey(ctx context.Context) (store.AuditSigningKey, error) {
	origin := c.cfg.Origin
	if origin == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return store.AuditSigningKey{}, err
		}
		origin = "vectabase/audit/" + hex.EncodeToString(b[:])
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return store.AuditSigningKey{}, fmt.Errorf("AUDIT_LOG_ORIGIN %q: %w", origin, err)
	}
	sealed, err := c.kr.Encrypt(ctx, signingKeyLocation, []byte(skey))
	if err != nil {
		return store.AuditSigningKey{}, err
	}
	return c.db.AddAuditSigningKey(ctx, store.AuditSigningKey{Origin: origin, VerifierKey: vkey, PrivateKey: sealed})
}

// VerifierKey returns the note verifier key of the checkpoints
// ("<origin>+<hash>+<base64 key>") and the log's origin.
func (c *Checkpointer) VerifierKey(ctx context.Context) (vkey, origin string, err error) {
	if _, err := c.key(ctx); err != nil {
		return "", "", err
	}
	return c.verifier, c.origin, nil
}

// Sign signs a checkpoint of the tree as it is now, stores it and, if it
// is new, publishes it to the witnesses.
func (c *Checkpointer) Sign(ctx context.Context) (store.AuditCheckpoint, error) {
	s, err := c.key(ctx)
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	size, root, err := c.db.AuditTree(ctx)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	if size == 0 {
		root = emptyRoot
	}
	body := log.Checkpoint{Origin: c.origin, Size: uint64(size), Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(body)}, s)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	cp := store.AuditCheckpoint{TreeSize: size, Root: root, Note: string(signed)}
	added, err := c.db.AddAuditCheckpoint(ctx, cp)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	if added {
		c.publish(ctx, cp)
	}
	return cp, nil
}

// Latest returns the newest stored checkpoint, signing one if none is.
func (c *Checkpointer) Latest(ctx context.Context) ([]byte, error) {
	cp, err := c.db.LatestAuditCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		cp, err = c.Sign(ctx)
	}
	if err != nil {
		return nil, vectabase.WrapError(vectabase.EUNAVAILABLE, "no audit checkpoint is available", err)
	}
	return []byte(cp.Note), nil
}

// publish hands a new checkpoint to every witness. A witness that fails is
// logged; the next checkpoint reaches it again (checkpoints are cumulative).
func (c *Checkpointer) publish(ctx context.Context, cp store.AuditCheckpoint) {
	if dir := c.cfg.WitnessDir; dir != "" {
		if err := writeWitnessFile(dir, cp); err != nil {
			c.log.Warn().Str("error", err.Error()).Msg("audit: checkpoint witness directory")
		}
	}
	for _, u := range c.cfg.WitnessURLs {
		if err := c.post(ctx, u, cp); err != nil {
			c.log.Warn().Str("error", err.Error()).Msg("audit: checkpoint witness URL")
		}
	}
}

func writeWitnessFile(dir string, cp store.AuditCheckpoint) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%020d.checkpoint", cp.TreeSize)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil // append-only: never overwrite a kept checkpoint
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(cp.Note); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *Checkpointer) post(ctx context.Context, url string, cp store.AuditCheckpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(cp.Note))
	if err != nil {
		return fmt.Errorf("witness: bad URL")
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("witness %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("witness %s: status %d", req.URL.Redacted(), resp.StatusCode)
	}
	return nil
}

// Run signs checkpoints as cfg.Every says until ctx ends. It looks at the
// tree's size once a second (one indexed single-row read), so the row
// count is met within a second, and it never touches the append path.
func (c *Checkpointer) Run(ctx context.Context) {
	every := c.cfg.Every
	if every.Rows == 0 && every.Interval == 0 {
		return
	}
	var last int64 = -1
	if cp, err := c.db.LatestAuditCheckpoint(ctx); err == nil {
		last = cp.TreeSize
	}
	lastAt := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		size, _, err := c.db.AuditTree(ctx)
		if err != nil {
			continue
		}
		due := (every.Rows > 0 && size-max(last, 0) >= every.Rows) ||
			(every.Interval > 0 && time.Since(lastAt) >= every.Interval && size > last)
		if !due {
			continue
		}
		cp, err := c.Sign(ctx)
		if err != nil {
			c.log.Error().Str("error", err.Error()).Msg("audit: sign checkpoint")
			continue
		}
		last, lastAt = cp.TreeSize, time.Now()
	}
}
