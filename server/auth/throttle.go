package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// RetryAfter is in the chain of a RATE_LIMITED error: how long the caller
// should wait. Handlers put it in the Retry-After header.
type RetryAfter struct{ Wait time.Duration }

func (r *RetryAfter) Error() string { return fmt.Sprintf("retry after %s", r.Wait) }

// Seconds is the wait rounded up to whole seconds, at least 1.
func (r *RetryAfter) Seconds() string {
	return strconv.Itoa(max(1, int(math.Ceil(r.Wait.Seconds()))))
}

// RetryAfterOf returns the wait carried by err, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var ra *RetryAfter
	if errors.As(err, &ra) {
		return ra.Wait, true
	}
	return 0, false
}

func rateLimited(msg string, wait time.Duration) error {
	return vectabase.WrapError(vectabase.ERATELIMITED, msg, &RetryAfter{Wait: wait})
}

// ipKey is the bucket subject of an IP (server.IPBucket: IPv6 by /64).
func ipKey(ip string) string { return server.IPBucket(ip) }

// accountBucket names the failure counter of an email. The email enters
// only as a keyed hash, so the table holds no addresses.
func (s *Service) accountBucket(email string) string {
	h, err := s.kr.MAC("throttle_account", []byte(email))
	if err != nil {
		// The MAC cannot fail with a loaded keyring; keep a distinct bucket anyway.
		return "fail:acct:" + email
	}
	return "fail:acct:" + hex.EncodeToString(h[:16])
}

func windowStart(now time.Time, window time.Duration) time.Time {
	return now.Truncate(window)
}

func attemptBucket(op string, meta RequestMeta) string {
	return "attempt:" + op + ":ip:" + ipKey(meta.IP)
}

func (s *Service) attemptsExceeded(op string, hits int, ws, now time.Time) error {
	if s.cfg.MaxAttemptsPerIP > 0 && hits > s.cfg.MaxAttemptsPerIP {
		s.metrics.rejected.WithLabelValues(op + "_ip").Inc()
		return rateLimited("too many attempts from this address; try again later", ws.Add(s.cfg.AttemptWindow).Sub(now))
	}
	return nil
}

// checkLogin throttles a login and looks up its user, in one statement: it
// counts the call against the IP's attempts, and against the account's
// failures up front (a successful login clears the account's counter), so
// parallel guesses cannot slip past the limit while password hashes are
// being computed; it reads the IP's failures; and it reads the user whose
// email it is (found false: none). A refusal for failures is audited.
func (s *Service) checkLogin(ctx context.Context, acct, email string, meta RequestMeta) (u store.User, found bool, err error) {
	now := s.now()
	aws, fws := windowStart(now, s.cfg.AttemptWindow), windowStart(now, s.cfg.FailureWindow)
	hits, u, found, err := s.db.ThrottleAddUserByEmail(ctx, []store.ThrottleInc{
		{Bucket: attemptBucket("login", meta), Inc: 1, WindowStart: aws},
		{Bucket: acct, Inc: 1, WindowStart: fws},
		{Bucket: ipFailBucket(meta), Inc: 0, WindowStart: fws},
	}, email)
	if err != nil {
		return store.User{}, false, err
	}
	if err := s.attemptsExceeded("login", hits[0].Hits, aws, now); err != nil {
		return store.User{}, false, err
	}
	var which string
	switch {
	case s.cfg.MaxFailuresPerAccount > 0 && hits[1].Hits > s.cfg.MaxFailuresPerAccount:
		which = "account"
	case s.cfg.MaxFailuresPerIP > 0 && hits[2].Hits >= s.cfg.MaxFailuresPerIP:
		which = "ip"
	default:
		return u, found, nil
	}
	s.metrics.rejected.WithLabelValues("login_failures_" + which).Inc()
	// The first refusal of a locked account or address in its window is
	// audited; the rest are counted (metric above, and as refusals by the
	// handler), so a flood of guesses cannot fill the audit queue.
	bucket := acct
	if which == "ip" {
		bucket = ipFailBucket(meta)
	}
	if s.throttleAudits.first(bucket, fws) {
		if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorAnonymous, Action: "auth.login_throttled",
			ResourceType: "login", Result: vectabase.ResultDenied, Details: map[string]any{"limit": which}}); err != nil {
			return store.User{}, false, err
		}
	}
	return store.User{}, false, rateLimited("too many failed logins; try again later", fws.Add(s.cfg.FailureWindow).Sub(now))
}

// checkRegister throttles a register call and answers a taken email, in
// one statement: it counts the call against the IP's attempts, reads the
// IP's failures and looks the email up. A taken email is CONFLICT, as the
// contract says, but counts as a failure against the IP, the same counter
// failed logins fill: probing which addresses have accounts is then as
// slow as guessing passwords, and an IP past AUTH_MAX_FAILURES_PER_IP may
// not register until its window ends. It answers before any password is
// hashed, so probing costs the server one statement per try.
func (s *Service) checkRegister(ctx context.Context, email string, meta RequestMeta) error {
	if s.cfg.MaxAttemptsPerIP <= 0 && s.cfg.MaxFailuresPerIP <= 0 {
		return nil
	}
	now := s.now()
	aws, fws := windowStart(now, s.cfg.AttemptWindow), windowStart(now, s.cfg.FailureWindow)
	hits, _, found, err := s.db.ThrottleAddUserByEmail(ctx, []store.ThrottleInc{
		{Bucket: attemptBucket("register", meta), Inc: 1, WindowStart: aws},
		{Bucket: ipFailBucket(meta), Inc: 0, WindowStart: fws},
	}, email)
	if err != nil {
		return err
	}
	if err := s.attemptsExceeded("register", hits[0].Hits, aws, now); err != nil {
		return err
	}
	if s.cfg.MaxFailuresPerIP > 0 && hits[1].Hits >= s.cfg.MaxFailuresPerIP {
		s.metrics.rejected.WithLabelValues("register_failures_ip").Inc()
		return rateLimited("too many failed attempts from this address; try again later", fws.Add(s.cfg.FailureWindow).Sub(now))
	}
	if found {
		return s.emailTaken(ctx, meta)
	}
	return nil
}

// emailTaken counts a register call for a taken email as a failure of its
// IP and answers CONFLICT.
func (s *Service) emailTaken(ctx context.Context, meta RequestMeta) error {
	if err := s.countFailure(ctx, meta); err != nil {
		return err
	}
	return vectabase.Errorf(vectabase.ECONFLICT, "email: already registered")
}

func ipFailBucket(meta RequestMeta) string { return "fail:ip:" + ipKey(meta.IP) }

// countFailure adds a failed login to the IP's counter (the account's was
// counted by checkLogin).
func (s *Service) countFailure(ctx context.Context, meta RequestMeta) error {
	ws := windowStart(s.now(), s.cfg.FailureWindow)
	_, err := s.db.ThrottleHit(ctx, []string{ipFailBucket(meta)}, ws, 1)
	return err
}

// throttleAudits is the set of (bucket, window) pairs already audited as
// throttled by this instance. It is bounded: past maxThrottleAudits
// entries it starts over (at worst a bucket is audited once more).
type throttleAudits struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const maxThrottleAudits = 10000

// first reports whether bucket's refusal in the window starting at ws is
// the first this instance sees.
func (t *throttleAudits) first(bucket string, ws time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.seen[bucket]; ok && w.Equal(ws) {
		return false
	}
	if t.seen == nil || len(t.seen) >= maxThrottleAudits {
		t.seen = map[string]time.Time{}
	}
	t.seen[bucket] = ws
	return true
}
