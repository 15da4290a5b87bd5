package mail

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// Preparer turns a claimed outbox mail into the message to send, inside
// the claim's transaction (it may mint the token a link carries and keep its
// id in the mail's data for the retries). send false means there is nothing
// to send, and the mail is done (a reset asked for an unknown address).
type Preparer func(ctx context.Context, tx pgx.Tx, m store.OutboxMail) (msg Message, send bool, err error)

// Worker sends the outbox's due mails. Each mail is claimed with FOR UPDATE
// SKIP LOCKED and marked sent in the transaction that holds it while the
// relay is talked to, so two instances never send one mail at the same time
// and a sent mail is never sent again. The one window for a repeat is a
// crash after the relay accepted a mail and before the commit: then the mail
// goes again (at least once, as every outbox delivers).
type Worker struct {
	cfg     Config
	db      *store.DB
	sender  Sender
	prepare Preparer
	log     zerolog.Logger
	now     func() time.Time

	results *prometheus.CounterVec
}

// NewWorker builds a worker. sender nil keeps mails queued (logged once per
// poll with a backlog).
func NewWorker(cfg Config, db *store.DB, sender Sender, prepare Preparer, log zerolog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if db == nil || prepare == nil {
		return nil, errors.New("mail: NewWorker needs a database and a preparer")
	}
	cfg = cfg.WithDefaults()
	results, err := server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_mail_deliveries_total",
		Help: "Outbox mails handled, by template and result (sent, skipped, retry, failed).",
	}, []string{"template", "result"}))
	if err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, db: db, sender: sender, prepare: prepare, log: log, now: time.Now, results: results}, nil
}

// Run sends due mails until ctx is done, polling every PollInterval when
// the outbox has nothing due.
func (w *Worker) Run(ctx context.Context) {
	if w.sender == nil {
		w.log.Warn().Msg("mail: no SMTP_URL: mails stay in the outbox until one is set")
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := w.SendDue(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("mail: outbox")
		}
		if n == 0 || err != nil {
			t.Reset(w.cfg.PollInterval)
		} else {
			t.Reset(0)
		}
	}
}

// SendDue handles up to 100 due mails and returns how many it handled.
func (w *Worker) SendDue(ctx context.Context) (int, error) {
	if w.sender == nil {
		return 0, errors.New("mail: no sender configured")
	}
	for n := 0; n < 100; n++ {
		ok, err := w.sendOne(ctx)
		if err != nil || !ok {
			return n, err
		}
	}
	return 100, nil
}

// sendOne claims, prepares and sends one mail; false when none is due.
func (w *Worker) sendOne(ctx context.Context) (bool, error) {
	var claimed store.OutboxMail
	var sendErr error
	err := w.db.InTx(ctx, func(tx pgx.Tx) error {
		m, err := store.ClaimMail(ctx, tx)
		if err != nil {
			return err
		}
		claimed = m
		msg, send, err := w.prepare(ctx, tx, m)
		if err != nil {
			return fmt.Errorf("mail: prepare %s: %w", m.Template, err)
		}
		if !send {
			w.results.WithLabelValues(m.Template, "skipped").Inc()
			return store.MailSent(ctx, tx, m.ID, true)
		}
		sctx, cancel := context.WithTimeout(ctx, w.cfg.SendTimeout)
		sendErr = w.sender.Send(sctx, w.cfg.From, msg)
		cancel()
		if sendErr == nil {
			w.results.WithLabelValues(m.Template, "sent").Inc()
			return store.MailSent(ctx, tx, m.ID, false)
		}
		return w.attemptFailed(ctx, tx, m, sendErr)
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil && claimed.ID != "" && sendErr == nil {
		// Preparing failed and rolled back: count the attempt on its own.
		ferr := w.db.InTx(ctx, func(tx pgx.Tx) error {
			m, cerr := store.ClaimMail(ctx, tx)
			if cerr != nil || m.ID != claimed.ID {
				return cerr
			}
			return w.attemptFailed(ctx, tx, m, err)
		})
		if ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
			return false, errors.Join(err, ferr)
		}
		return true, err
	}
	return err == nil, err
}

// attemptFailed schedules a retry with exponential backoff (30 s doubling,
// at most an hour, ±20% jitter so instances do not retry in step), or gives
// the mail up after MaxAttempts.
func (w *Worker) attemptFailed(ctx context.Context, tx pgx.Tx, m store.OutboxMail, cause error) error {
	final := m.Attempts+1 >= w.cfg.MaxAttempts
	backoff := min(30*time.Second<<min(m.Attempts, 10), time.Hour)
	backoff = time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
	result := "retry"
	if final {
		result = "failed"
	}
	w.results.WithLabelValues(m.Template, result).Inc()
	w.log.Warn().Str("mailId", m.ID).Str("template", m.Template).Int("attempt", m.Attempts+1).
		Bool("final", final).Err(cause).Msg("mail: delivery failed")
	return store.MailAttemptFailed(ctx, tx, m.ID, cause.Error(), w.now().Add(backoff), final)
}
