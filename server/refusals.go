package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
)

// RefusalConfig sets how requests refused before anyone was authenticated
// (no or bad bearer token, no, malformed or unknown API key, a forged OAuth
// state) are throttled and recorded. Filled from the environment in cmd/.
type RefusalConfig struct {
	// LimitPerMinute is how many refusals one client address (an IPv6
	// address counts by its /64) may cause per minute; past it, its
	// refusals, and its API-key calls before any key look-up, answer 429
	// RATE_LIMITED until the minute ends. 0: no limit. The count is kept
	// in memory per instance.
	LimitPerMinute int `env:"REFUSAL_LIMIT_PER_MINUTE" envDefault:"120"`
	// MaxAddresses bounds the addresses tracked per minute; refusals from
	// further addresses share one aggregate (address "other").
	// The cap bounds both memory and the aggregate rows one minute can add
	// to the audit trail per instance.
	MaxAddresses int `env:"REFUSAL_MAX_ADDRESSES" envDefault:"1000"`
}

// RefusalRecorder is where the per-minute aggregates go: the audit trail
// (vault/audit.Log).
type RefusalRecorder interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// ActionRefused is the audit action of a refusal aggregate: one row per
// client address, minute and instance, with the count and the reasons.
const ActionRefused = "request.refused"

// Refusals counts refused unauthenticated requests per client address and
// minute. They are cheap by design: no audit row or request-log row each;
// instead a counter in memory, the metric vectabase_refusals_total{reason},
// and, when the minute closes (or on Flush at shutdown), one audit row per
// address with the count. Every instance writes its own aggregates. It is
// safe for concurrent use.
type Refusals struct {
	cfg RefusalConfig
	log zerolog.Logger
	now func() time.Time

	mu      sync.Mutex
	rec     RefusalRecorder
	window  time.Time // start of the current minute
	counts  map[string]*refusalCount
	other   *refusalCount
	pending []refusalWindow // closed minutes not yet written

	total *prometheus.CounterVec
}

type refusalCount struct {
	ip      string // the first address seen under this key
	n       int
	reasons map[string]int
}

type refusalWindow struct {
	start  time.Time
	end    time.Time // a minute after start, unless folded (see rollLocked)
	counts map[string]*refusalCount
	other  *refusalCount
}

// NewRefusals returns an empty tracker; reg (may be nil) gets
// vectabase_refusals_total{reason}.
func NewRefusals(cfg RefusalConfig, log zerolog.Logger, reg prometheus.Registerer) *Refusals {
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = 1000
	}
	total, err := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_refusals_total",
		Help: "Requests refused before authentication, by reason (bearer_missing, bearer_invalid, api_key_missing, api_key_malformed, api_key_unknown, oauth_state, throttled).",
	}, []string{"reason"}))
	if err != nil {
		log.Warn().Err(err).Msg("register vectabase_refusals_total")
	}
	return &Refusals{cfg: cfg, log: log, now: time.Now, counts: map[string]*refusalCount{}, total: total}
}

// SetRecorder sets where aggregates are written (nil: nowhere, metrics
// only).
func (r *Refusals) SetRecorder(rec RefusalRecorder) {
	r.mu.Lock()
	r.rec = rec
	r.mu.Unlock()
}

// addressKey is what refusals are counted by: IPBucket (IPv6 by its /64,
// which one client usually holds whole).
func addressKey(ip string) string { return IPBucket(ip) }

// maxPending bounds the closed minutes waiting for Flush (Run flushes
// every minute; more wait only while nobody flushes or a flush is slow).
const maxPending = 2

// rollLocked starts a new minute when now is past the current one; the
// closed minute waits in pending for Flush. Past maxPending, the two
// oldest pending windows are folded into one longer window, so memory
// stays bounded and no refusal goes uncounted.
func (r *Refusals) rollLocked(now time.Time) {
	w := now.Truncate(time.Minute)
	if w.Equal(r.window) {
		return
	}
	if len(r.counts) > 0 || r.other != nil {
		r.pending = append(r.pending, refusalWindow{start: r.window, end: r.window.Add(time.Minute), counts: r.counts, other: r.other})
		if len(r.pending) > maxPending {
			a, b := r.pending[0], r.pending[1]
			for k, c := range b.counts {
				switch {
				case a.counts[k] != nil:
					a.counts[k] = merge(a.counts[k], c)
				case len(a.counts) < r.cfg.MaxAddresses:
					a.counts[k] = c
				default:
					a.other = merge(a.other, &refusalCount{n: c.n, reasons: c.reasons})
				}
			}
			a.other = merge(a.other, b.other)
			a.end = b.end
			r.pending = append([]refusalWindow{a}, r.pending[2:]...)
		}
		r.counts = map[string]*refusalCount{}
		r.other = nil
	}
	r.window = w
}

func merge(a, b *refusalCount) *refusalCount {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	a.n += b.n
	for k, v := range b.reasons {
		a.reasons[k] += v
	}
	return a
}

// add counts one refusal from ip and returns the address's count in this
// minute and when the minute ends.
func (r *Refusals) add(ip, reason string) (int, time.Time) {
	now := r.now()
	key := addressKey(ip)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rollLocked(now)
	c := r.counts[key]
	if c == nil {
		if len(r.counts) >= r.cfg.MaxAddresses {
			if r.other == nil {
				r.other = &refusalCount{reasons: map[string]int{}}
			}
			c = r.other
		} else {
			c = &refusalCount{ip: ip, reasons: map[string]int{}}
			r.counts[key] = c
		}
	}
	c.n++
	c.reasons[reason]++
	n := c.n
	if c == r.other {
		// Addresses past the cap share one count; do not throttle them all
		// together.
		n = 0
	}
	return n, r.window.Add(time.Minute)
}

// over reports whether ip has used up its refusals for this minute.
func (r *Refusals) over(ip string) (bool, time.Time) {
	if r.cfg.LimitPerMinute <= 0 {
		return false, time.Time{}
	}
	now := r.now()
	key := addressKey(ip)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rollLocked(now)
	c := r.counts[key]
	return c != nil && c.n >= r.cfg.LimitPerMinute, r.window.Add(time.Minute)
}

func (r *Refusals) rateLimited(c *fiber.Ctx, reset time.Time) error {
	wait := int(reset.Sub(r.now()).Seconds() + 0.999)
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(wait, 1)))
	return vectabase.Errorf(vectabase.ERATELIMITED, "too many refused requests from this address; try again later")
}

// refuse records a refusal and returns what the client gets: err, or 429
// once the address is past its limit.
func (r *Refusals) refuse(c *fiber.Ctx, reason string, err error) error {
	r.total.WithLabelValues(reason).Inc()
	n, reset := r.add(ClientIP(c), reason)
	if r.cfg.LimitPerMinute > 0 && n > r.cfg.LimitPerMinute {
		return r.rateLimited(c, reset)
	}
	return err
}

// Flush writes one audit row per address of every closed minute, and of
// the current one too when all is true (shutdown). A minute whose rows
// cannot be written is logged and dropped (the metric has its counts).
func (r *Refusals) Flush(ctx context.Context, all bool) {
	r.mu.Lock()
	r.rollLocked(r.now())
	windows := r.pending
	r.pending = nil
	if all && (len(r.counts) > 0 || r.other != nil) {
		windows = append(windows, refusalWindow{start: r.window, end: r.window.Add(time.Minute), counts: r.counts, other: r.other})
		r.counts = map[string]*refusalCount{}
		r.other = nil
	}
	rec := r.rec
	r.mu.Unlock()
	if rec == nil {
		return
	}
	// A few rows at a time, so they share the audit log's group commits
	// without crowding the queue that requests use.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	write := func(w refusalWindow, key string, c *refusalCount) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.write(ctx, rec, w, key, c)
		}()
	}
	for _, w := range windows {
		for key, c := range w.counts {
			write(w, key, c)
		}
		if w.other != nil {
			write(w, "other", w.other)
		}
	}
	wg.Wait()
}

func (r *Refusals) write(ctx context.Context, rec RefusalRecorder, w refusalWindow, key string, c *refusalCount) {
	start := w.start
	reasons := make(map[string]any, len(c.reasons))
	for k, v := range c.reasons {
		reasons[k] = v
	}
	err := rec.Record(ctx, vectabase.AuditEvent{
		Time: start, ActorType: vectabase.ActorAnonymous, Action: ActionRefused,
		ResourceType: "client_address", ResourceID: key, Result: vectabase.ResultDenied, IP: c.ip,
		Details: map[string]any{"count": c.n, "reasons": reasons, "windowStart": start.UTC().Format(time.RFC3339), "windowSeconds": int(w.end.Sub(start) / time.Second)},
	})
	if err != nil {
		r.log.Warn().Str("error", err.Error()).Str("address", key).Int("count", c.n).Msg("refusal aggregate not audited")
	}
}

// Run flushes closed minutes shortly after each minute ends, until ctx is
// done. Call Flush(ctx, true) after the server has drained, to write the
// last minute.
func (r *Refusals) Run(ctx context.Context) {
	for {
		now := r.now()
		next := now.Truncate(time.Minute).Add(time.Minute + time.Second)
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		r.Flush(fctx, false)
		cancel()
	}
}

type refusalsKey struct{}

// Refuse records a request refused before authentication (reason names
// why, a vectabase_refusals_total label) and returns what the client gets:
// err, or 429 RATE_LIMITED with Retry-After once the client's address has
// caused more than REFUSAL_LIMIT_PER_MINUTE refusals this minute. Such a
// refusal gets no audit row of its own: it is counted in its address's
// per-minute aggregate.
func Refuse(c *fiber.Ctx, reason string, err error) error {
	r, _ := c.Locals(refusalsKey{}).(*Refusals)
	if r == nil {
		return err
	}
	return r.refuse(c, reason, err)
}

// RefusalGate answers 429 (counted as a "throttled" refusal) when the
// client's address is already past its refusal limit this minute, so a
// flooding client's next calls are refused before any database work;
// otherwise nil.
func RefusalGate(c *fiber.Ctx) error {
	r, _ := c.Locals(refusalsKey{}).(*Refusals)
	if r == nil {
		return nil
	}
	over, reset := r.over(ClientIP(c))
	if !over {
		return nil
	}
	r.total.WithLabelValues("throttled").Inc()
	r.add(ClientIP(c), "throttled")
	return r.rateLimited(c, reset)
}
