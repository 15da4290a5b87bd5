// Package alerts raises operator alerts: each goes into the audit trail
// and into an outbox table, from which one instance delivers it to
// ALERT_WEBHOOK_URL as JSON that Slack and Discord both accept
// ({"text": …, "content": …}). An event raised by several instances (same
// event key) is sent once; a failed delivery is retried with backoff; and
// raising never waits for the webhook.
package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Kinds of alerts.
const (
	KindHoneytokenRead  = "honeytoken_read"
	KindAuditVerify     = "audit_verification_failed"
	KindRotationFailed  = "key_rotation_failed"
	KindRotationStalled = "key_rotation_stalled"
	KindKEKUnreachable  = "kek_unreachable"
	KindBackupFailed    = "backup_failed"
	ActionAlertRaised   = "alert.raised"
	maxMessageBytes     = 1800 // Discord's content limit is 2000 characters
	claimBatch          = 16
	claimLease          = time.Minute
	maxBackoff          = time.Hour
	webhookTimeout      = 10 * time.Second
	defaultPollInterval = time.Second
)

// Config is the alerts' configuration, filled from the environment in cmd/.
type Config struct {
	// WebhookURL receives each alert as a POST; empty: alerts go only to
	// the audit trail (and wait in the outbox).
	WebhookURL string `env:"ALERT_WEBHOOK_URL"`
}

// Recorder is the audit trail.
type Recorder interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Alert is one event worth an operator's attention. Key identifies the
// event: raising the same key twice (two instances, a retry) sends it
// once. Message must hold no secret value.
type Alert struct {
	Key, Kind, Message string
	// Resource names what the alert is about, for its audit row.
	ResourceType, ResourceID string
}

// Service raises and delivers alerts. It is safe for concurrent use.
type Service struct {
	db     *store.DB
	rec    Recorder
	cfg    Config
	log    zerolog.Logger
	client *http.Client
	wake   chan struct{}
	poll   time.Duration
	// raising counts alerts Raise is still storing, so Wait can let a
	// short-lived process (the CLI) finish them before it exits.
	raising sync.WaitGroup
}

// New returns the alerts service.
func New(db *store.DB, rec Recorder, cfg Config, log zerolog.Logger) *Service {
	return &Service{db: db, rec: rec, cfg: cfg, log: log, client: &http.Client{Timeout: webhookTimeout},
		wake: make(chan struct{}, 1), poll: defaultPollInterval}
}

// Raise records a in the audit trail and the outbox, in the background:
// it returns at once and never fails the caller's request.
func (s *Service) Raise(a Alert) {
	s.raising.Add(1)
	go func() {
		defer s.raising.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.RaiseNow(ctx, a); err != nil {
			s.log.Error().Str("kind", a.Kind).Str("error", err.Error()).Msg("alert not raised")
		}
	}()
}

// Wait returns once every alert Raise started is stored (or failed).
func (s *Service) Wait() { s.raising.Wait() }

// RaiseNow records a in the outbox and, the first time its key is seen,
// in the audit trail, and returns once both are stored.
func (s *Service) RaiseNow(ctx context.Context, a Alert) error {
	if len(a.Message) > maxMessageBytes {
		a.Message = a.Message[:maxMessageBytes]
	}
	added, err := s.db.EnqueueAlert(ctx, store.Alert{EventKey: a.Key, Kind: a.Kind, Message: a.Message})
	if err != nil {
		return fmt.Errorf("alerts: enqueue: %w", err)
	}
	if !added {
		return nil
	}
	if err := s.rec.Record(ctx, vectabase.AuditEvent{
		ActorType: vectabase.ActorSystem, Action: ActionAlertRaised, ResourceType: a.ResourceType,
		ResourceID: a.ResourceID, Result: vectabase.ResultAllowed,
		Details: map[string]any{"kind": a.Kind, "event": a.Key, "message": a.Message},
	}); err != nil {
		return fmt.Errorf("alerts: audit: %w", err)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run delivers due alerts until ctx ends. Without a webhook it returns.
func (s *Service) Run(ctx context.Context) {
	if s.cfg.WebhookURL == "" {
		return
	}
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		s.deliverDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// deliverDue sends what is due now, in claimed batches.
func (s *Service) deliverDue(ctx context.Context) {
	for range 100 { // bounded: at most 100 batches per wake-up
		batch, err := s.db.ClaimAlerts(ctx, claimBatch, claimLease)
		if err != nil || len(batch) == 0 {
			return
		}
		for _, a := range batch {
			if err := s.send(ctx, a); err != nil {
				backoff := min(time.Duration(1<<min(a.Attempts, 12))*time.Second, maxBackoff)
				_ = s.db.AlertFailed(ctx, a.ID, err.Error(), time.Now().Add(backoff))
				s.log.Warn().Str("kind", a.Kind).Int("attempt", a.Attempts).Str("error", err.Error()).Msg("alert delivery failed")
				continue
			}
			_ = s.db.AlertSent(ctx, a.ID)
		}
	}
}

// payload is what Slack ("text") and Discord ("content") webhooks read.
type payload struct {
	Text    string `json:"text"`
	Content string `json:"content"`
}

func (s *Service) send(ctx context.Context, a store.Alert) error {
	msg := "[vectabase] " + a.Message
	body, _ := json.Marshal(payload{Text: msg, Content: msg})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ALERT_WEBHOOK_URL is not a URL")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The URL may carry a token (Slack, Discord): never log it whole.
		return fmt.Errorf("POST %s: unreachable", req.URL.Host)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d", req.URL.Host, resp.StatusCode)
	}
	return nil
}

// Watch runs check every interval until ctx ends and raises an alert of
// kind when it fails: once per kind and UTC hour across instances, so an
// outage that lasts is reminded hourly, not on every probe. what names
// the checked thing in the message (the error itself is not sent: it may
// name hosts or paths).
func (s *Service) Watch(ctx context.Context, kind, what string, interval time.Duration, check func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, min(interval, 30*time.Second))
		err := check(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			hour := time.Now().UTC().Truncate(time.Hour).Format("2006-01-02T15")
			s.log.Error().Str("kind", kind).Str("error", err.Error()).Msg(what + " check failed")
			s.Raise(Alert{Key: kind + ":" + hour, Kind: kind, Message: what + " is failing (checked " + hour + "h UTC); see the server log", ResourceType: "keyring"})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
