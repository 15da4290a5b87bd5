package discord

import (
	"context"
	"sync"
	"time"

	"github.com/vectabase/vectabase/store"
)

// statusBatcher reads the whitelist status of /whitelist check's members,
// sending the look-ups that wait at the same moment as one statement. A
// look-up is never answered by a read that started before it was asked
// (it joins only a batch not yet sent), so batching changes no answer; it
// only spares the database a statement per command under load. With no
// load a look-up is sent at once, alone.
type statusBatcher struct {
	read     func(context.Context, []store.StatusQuery) ([]store.MemberStatus, error)
	maxBusy  int           // batches in flight at once
	maxBatch int           // look-ups per batch
	timeout  time.Duration // bounds one batch's read

	linger time.Duration // wait for company when the last batch had some

	// stall: once the newest batch in flight has waited this long, the
	// look-ups queued behind it (relieve) and those arriving (get) start
	// another batch, up to maxStalled in flight, so that one slow
	// statement does not hold every check of the instance past Discord's
	// 3 seconds.
	stall      time.Duration
	maxStalled int

	mu        sync.Mutex
	busy      int
	lastBatch int
	newest    time.Time // when the newest batch in flight was sent
	queue     []*statusWait
}

// statusWait is one look-up waiting for its batch. Waits are pooled: a
// check's allocations are a fair part of its cost. done is signalled once
// per use (buffered, so the leader never blocks on it), and the leader
// touches a wait no more after signalling it.
type statusWait struct {
	q    store.StatusQuery
	st   store.MemberStatus
	err  error
	done chan struct{}
}

var statusWaits = sync.Pool{New: func() any { return &statusWait{done: make(chan struct{}, 1)} }}

// statusScratch is a leader's batch, reused between batches.
type statusScratch struct {
	waits []*statusWait
	qs    []store.StatusQuery
}

var statusScratches = sync.Pool{New: func() any { return new(statusScratch) }}

// Batching settings. One batch in flight at a time (unless it stalls:
// after statusStall the look-ups behind it start another, at most
// statusStalled in flight): checks arriving meanwhile gather for the
// next, and while checks keep arriving together (the last batch had more
// than one) the next waits statusLinger for company. Each statement costs PostgreSQL and pgx far more than each
// member in it, so under load this is most of a check's database cost
// saved, for a fraction of a millisecond of Discord's 3 seconds; alone, a
// check is sent at once. A batch is bounded so that one slow statement
// cannot hold many commands. The linger was 100 µs; at 200 µs batches
// grow enough that bench/discord's check costs 141-145 µs of CPU per
// request rather than 143-150 (PostgreSQL's share 20 -> 10-15 µs), and the
// throughput ratio to PING moved from 0.67-0.71 to 0.70-0.73 in
// alternating runs; at 500 µs the wait itself bounds 16 connections'
// throughput (0.52-0.57).
const (
	statusBusy    = 1
	statusBatch   = store.MaxStatusBatch
	statusTimeout = 5 * time.Second
	statusLinger  = 200 * time.Microsecond
	statusStall   = 100 * time.Millisecond
	statusStalled = 4
)

func newStatusBatcher(read func(context.Context, []store.StatusQuery) ([]store.MemberStatus, error)) *statusBatcher {
	return &statusBatcher{read: read, maxBusy: statusBusy, maxBatch: statusBatch, timeout: statusTimeout, linger: statusLinger,
		stall: statusStall, maxStalled: statusStalled}
}

// get returns q's status, read after get was called. ctx bounds the wait.
func (b *statusBatcher) get(ctx context.Context, q store.StatusQuery) (store.MemberStatus, error) {
	w := statusWaits.Get().(*statusWait)
	w.q = q
	b.mu.Lock()
	b.queue = append(b.queue, w)
	lead := b.busy < b.maxBusy || b.stalledLocked()
	if lead {
		b.busy++
	}
	b.mu.Unlock()
	if lead {
		go b.lead()
	}
	select {
	case <-w.done:
		st, err := w.st, w.err
		*w = statusWait{done: w.done}
		statusWaits.Put(w)
		return st, err
	case <-ctx.Done():
		// The leader still holds w and will signal it: w is left to the
		// garbage collector rather than pooled.
		return store.MemberStatus{}, ctx.Err()
	}
}

// stalledLocked reports whether another batch may start beside those in
// flight: the newest of them has waited the stall time, and fewer than
// maxStalled are in flight. b.mu is held.
func (b *statusBatcher) stalledLocked() bool {
	return b.stall > 0 && b.busy < b.maxStalled && !b.newest.IsZero() && time.Since(b.newest) >= b.stall
}

// relieve runs when a batch has been in flight for the stall time: the
// look-ups queued behind it get a batch of their own. (Look-ups arriving
// later find the stall in get.)
func (b *statusBatcher) relieve() {
	b.mu.Lock()
	start := len(b.queue) > 0 && b.busy < b.maxStalled
	if start {
		b.busy++
	}
	b.mu.Unlock()
	if start {
		b.lead()
	}
}

// lead sends batches until the queue is empty.
func (b *statusBatcher) lead() {
	sc := statusScratches.Get().(*statusScratch)
	defer statusScratches.Put(sc)
	for {
		b.mu.Lock()
		if b.linger > 0 && b.lastBatch > 1 && len(b.queue) < b.maxBatch {
			// Checks are arriving together: wait a moment for more to share
			// this batch's statement.
			b.mu.Unlock()
			time.Sleep(b.linger)
			b.mu.Lock()
		}
		n := min(len(b.queue), b.maxBatch)
		b.lastBatch = n
		if n == 0 {
			b.busy--
			if b.busy == 0 {
				b.newest = time.Time{}
			}
			b.mu.Unlock()
			return
		}
		b.newest = time.Now()
		batch := append(sc.waits[:0], b.queue[:n]...)
		// The rest move to the front, so that the queue's array serves
		// again.
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		b.mu.Unlock()

		qs := sc.qs[:0]
		for _, w := range batch {
			qs = append(qs, w.q)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		var relief *time.Timer
		if b.stall > 0 {
			relief = time.AfterFunc(b.stall, b.relieve)
		}
		sts, err := b.read(ctx, qs)
		if relief != nil {
			relief.Stop()
		}
		cancel()
		for i, w := range batch {
			if err != nil {
				w.err = err
			} else {
				w.st = sts[i]
			}
			w.done <- struct{}{}
		}
		// Keep the scratch's capacity, not its members (nor their strings).
		clear(batch)
		clear(qs)
		sc.waits, sc.qs = batch, qs
	}
}
