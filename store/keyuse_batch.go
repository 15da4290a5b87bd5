package store

import (
	"context"
	"sync"
	"time"
)

// queuedBatchTimeout bounds the statement of a batch of queued uses.
const queuedBatchTimeout = 10 * time.Second

// keyUseBatcher folds concurrent uses of one API key into one statement.
// While a statement for a key is in flight, later uses of that key queue;
// when it returns, the queue goes as one statement that adds its size to
// the window's counter (and answers each use's whitelist check, if any).
// Each use still counts once and gets its own place in the window: the
// counter update is atomic, so the counter after a batch minus its size is
// what came before it, whichever instance or lane sent what. The limit is
// therefore exact across instances; at low load a use goes alone, with no
// added wait.
type keyUseBatcher struct {
	mu    sync.Mutex
	lanes map[string]*keyLane
	run   func(ctx context.Context, keyHash []byte, checks []*CheckQuery) (KeyUse, []CheckResult, error)
}

type keyLane struct {
	next *keyBatch // uses waiting for the statement in flight
}

type keyBatch struct {
	checks []*CheckQuery // one per use; nil for a use without a check
	done   chan struct{}
	res    KeyUse // Count is the counter after the whole batch
	out    []CheckResult
	err    error
}

func newKeyUseBatcher(run func(ctx context.Context, keyHash []byte, checks []*CheckQuery) (KeyUse, []CheckResult, error)) *keyUseBatcher {
	return &keyUseBatcher{lanes: map[string]*keyLane{}, run: run}
}

// use counts one use of keyHash and, when q is not nil, answers the
// whitelist check q over the key's developer's systems.
func (b *keyUseBatcher) use(ctx context.Context, keyHash []byte, q *CheckQuery) (KeyUse, CheckResult, error) {
	// Uses with and without a check go in lanes of their own: their
	// statements differ, and both update the counter atomically.
	k := string(keyHash)
	if q != nil {
		k = "check:" + k
	}
	b.mu.Lock()
	lane, busy := b.lanes[k]
	if !busy {
		// Nothing in flight for this key: go now, alone.
		b.lanes[k] = &keyLane{}
		b.mu.Unlock()
		kb := &keyBatch{checks: []*CheckQuery{q}, done: make(chan struct{})}
		b.flush(ctx, k, keyHash, kb)
		return kb.result(0)
	}
	if lane.next == nil {
		lane.next = &keyBatch{done: make(chan struct{})}
	}
	kb := lane.next
	pos := len(kb.checks)
	kb.checks = append(kb.checks, q)
	b.mu.Unlock()
	select {
	case <-kb.done:
		return kb.result(pos)
	case <-ctx.Done():
		// Counted all the same once the batch runs, like a request whose
		// client went away after sending it.
		return KeyUse{}, CheckResult{}, ctx.Err()
	}
}

// flush runs kb's statement, then hands the queue that formed meanwhile to
// a goroutine of its own, so that no caller waits for others' statements.
func (b *keyUseBatcher) flush(ctx context.Context, k string, keyHash []byte, kb *keyBatch) {
	kb.res, kb.out, kb.err = b.run(ctx, keyHash, kb.checks)
	close(kb.done)
	b.mu.Lock()
	lane := b.lanes[k]
	next := lane.next
	lane.next = nil
	if next == nil {
		delete(b.lanes, k)
	}
	b.mu.Unlock()
	if next != nil {
		// The queued batch belongs to other requests: it must not end with
		// this one's context, but it still has a deadline.
		go func() {
			qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queuedBatchTimeout)
			defer cancel()
			b.flush(qctx, k, keyHash, next)
		}()
	}
}

// result is what the use at position pos of the batch gets.
func (kb *keyBatch) result(pos int) (KeyUse, CheckResult, error) {
	if kb.err != nil {
		return KeyUse{}, CheckResult{}, kb.err
	}
	u := kb.res
	u.Count = u.Count - len(kb.checks) + pos + 1
	var r CheckResult
	if pos < len(kb.out) {
		r = kb.out[pos]
	}
	return u, r, nil
}
