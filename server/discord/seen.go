package discord

import (
	"sync"
	"time"
)

// maxSeen bounds the interaction ids one instance remembers; Discord's
// signature window (MaxClockSkew) bounds how long one is worth keeping.
const maxSeen = 100000

// seenSet remembers the interaction ids this instance handled recently.
type seenSet struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	at    map[string]time.Time
	order []string // insertion order, for expiry and the bound
}

func newSeenSet(max int, ttl time.Duration) *seenSet {
	return &seenSet{ttl: ttl, max: max, at: map[string]time.Time{}}
}

// add records id and reports whether it is new (an empty id is never
// recorded: Discord always sends one, so such a body is refused earlier).
func (s *seenSet) add(id string, now time.Time) bool {
	if id == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.order) > 0 && (len(s.order) >= s.max || now.Sub(s.at[s.order[0]]) > s.ttl) {
		delete(s.at, s.order[0])
		s.order = s.order[1:]
	}
	if _, ok := s.at[id]; ok {
		return false
	}
	s.at[id] = now
	s.order = append(s.order, id)
	return true
}

// forget drops id, so that a delivery whose handling failed before it
// started may be retried.
func (s *seenSet) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.at, id)
}
