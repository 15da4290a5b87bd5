package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
)

type eventLog struct {
	mu  sync.Mutex
	evs []vectabase.AuditEvent
}

func (l *eventLog) Record(_ context.Context, ev vectabase.AuditEvent) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
	return nil
}

// TestProperty21_RefusalAggregatesCountEveryRefusal claims: whatever the
// sequence of refusals (addresses, IPv6 neighbours in one /64, minutes
// passing, flushes in between), the aggregate rows written count every
// refusal exactly once, with one row per address key and minute (addresses
// past the cap share one "other" row), and an address is told it is over
// the limit exactly when its count this minute passes it. 100 checks
// (rapid's default).
func TestProperty21_RefusalAggregatesCountEveryRefusal(t *testing.T) {
	t.Parallel()
	addrs := []string{"192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "not-an-ip"}
	rapid.Check(t, func(rt *rapid.T) {
		limit := rapid.IntRange(1, 5).Draw(rt, "limit")
		maxAddr := rapid.IntRange(1, 6).Draw(rt, "maxAddresses")
		clock := time.Date(2026, 1, 9, 12, 0, 0, 0, time.UTC).Add(time.Duration(rapid.IntRange(0, 59).Draw(rt, "startSecond")) * time.Second)
		r := NewRefusals(RefusalConfig{LimitPerMinute: limit, MaxAddresses: maxAddr}, zerolog.Nop(), nil)
		r.now = func() time.Time { return clock }
		rec := &eventLog{}
		r.SetRecorder(rec)

		// The model: per minute, the address keys in order of first
		// refusal and their counts.
		type win struct {
			order  []string
			counts map[string]int
		}
		model := map[time.Time]*win{}
		total := 0
		steps := rapid.IntRange(1, 80).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("op%d", i)) {
			case 0:
				clock = clock.Add(time.Duration(rapid.IntRange(1, 150).Draw(rt, "advance")) * time.Second)
			case 1:
				r.Flush(context.Background(), false)
			default:
				ip := rapid.SampledFrom(addrs).Draw(rt, "ip")
				n, reset := r.add(ip, rapid.SampledFrom([]string{"bearer_missing", "api_key_unknown"}).Draw(rt, "reason"))
				total++
				w := clock.Truncate(time.Minute)
				m := model[w]
				if m == nil {
					m = &win{counts: map[string]int{}}
					model[w] = m
				}
				key := addressKey(ip)
				if _, seen := m.counts[key]; !seen && len(m.order) < maxAddr {
					m.order = append(m.order, key)
				}
				tracked := false
				for _, k := range m.order {
					tracked = tracked || k == key
				}
				if !tracked {
					key = "other"
				}
				m.counts[key]++
				if !reset.Equal(w.Add(time.Minute)) {
					rt.Fatalf("reset = %v, want the end of the minute %v", reset, w.Add(time.Minute))
				}
				wantN := m.counts[key]
				if key == "other" {
					wantN = 0 // never throttled together
				}
				if n != wantN {
					rt.Fatalf("add(%s) count = %d, want %d", ip, n, wantN)
				}
				if over, _ := r.over(ip); over != (key != "other" && m.counts[key] >= limit) {
					rt.Fatalf("over(%s) = %v with %d refusals this minute and limit %d", ip, over, m.counts[key], limit)
				}
			}
		}
		r.Flush(context.Background(), true)

		got := map[string]int{}
		folded := map[time.Time][2]int{} // start -> seconds, count, of windows folded past maxPending
		sum := 0
		for _, ev := range rec.evs {
			if ev.Action != ActionRefused || ev.ActorType != vectabase.ActorAnonymous {
				rt.Fatalf("event %+v, want %s by anonymous", ev, ActionRefused)
			}
			k := ev.Time.Format(time.RFC3339) + " " + ev.ResourceID
			if _, dup := got[k]; dup {
				rt.Fatalf("two aggregate rows for %s", k)
			}
			c, _ := ev.Details["count"].(int)
			secs, _ := ev.Details["windowSeconds"].(int)
			got[k] = c
			sum += c
			if secs != 60 {
				f := folded[ev.Time]
				folded[ev.Time] = [2]int{secs, f[1] + c}
			}
		}
		if sum != total {
			rt.Fatalf("aggregates count %d refusals, want %d", sum, total)
		}
		covered := func(t time.Time) bool {
			for start, f := range folded {
				if !t.Before(start) && t.Before(start.Add(time.Duration(f[0])*time.Second)) {
					return true
				}
			}
			return false
		}
		for w, m := range model {
			if covered(w) {
				continue
			}
			for key, c := range m.counts {
				if k := w.Format(time.RFC3339) + " " + key; got[k] != c {
					rt.Fatalf("aggregate %s = %d, want %d", k, got[k], c)
				}
			}
		}
		// A folded window counts exactly the refusals of the minutes it
		// covers (an address may move to "other" when folding hits the cap).
		for start, f := range folded {
			want := 0
			for w, m := range model {
				if !w.Before(start) && w.Before(start.Add(time.Duration(f[0])*time.Second)) {
					for _, c := range m.counts {
						want += c
					}
				}
			}
			if f[1] != want {
				rt.Fatalf("folded window from %s (%d s) counts %d, want %d", start, f[0], f[1], want)
			}
		}
	})
}
