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
// the window's counter. Each use still counts once and gets its own place
// in the window (the counter before the batch plus its position), so the
// limit is exact across instances; at low load a use goes alone, with no
// added wait.
type keyUseBatcher struct {
	mu    sync.Mutex
	lanes map[string]*keyLane
	run   func(ctx context.Context, keyHash []byte, n int) (KeyUse, error)
}

type keyLane struct {
	next *keyBatch // uses waiting for the statement in flight
}

type keyBatch struct {
	n    int
	done chan struct{}
	res  KeyUse // Count is the counter after the whole batch
	err  error
}

func newKeyUseBatcher(run func(ctx context.Context, keyHash []byte, n int) (KeyUse, error)) *keyUseBatcher {
	return &keyUseBatcher{lanes: map[string]*keyLane{}, run: run}
}

// use counts one use of keyHash and returns its KeyUse.
func (b *keyUseBatcher) use(ctx context.Context, keyHash []byte) (KeyUse, error) {
	k := string(keyHash)
	b.mu.Lock()
	lane, busy := b.lanes[k]
	if !busy {
		// Nothing in flight for this key: go now, alone.
		b.lanes[k] = &keyLane{}
		b.mu.Unlock()
		kb := &keyBatch{n: 1, done: make(chan struct{})}
		b.flush(ctx, k, keyHash, kb)
		return kb.result(0)
	}
	if lane.next == nil {
		lane.next = &keyBatch{done: make(chan struct{})}
	}
	kb := lane.next
	pos := kb.n
	kb.n++
	b.mu.Unlock()
	select {
	case <-kb.done:
		return kb.result(pos)
	case <-ctx.Done():
		// Counted all the same once the batch runs, like a request whose
		// client went away after sending it.
		return KeyUse{}, ctx.Err()
	}
}

// flush runs kb's statement, then hands the queue that formed meanwhile to
// a goroutine of its own, so that no caller waits for others' statements.
func (b *keyUseBatcher) flush(ctx context.Context, k string, keyHash []byte, kb *keyBatch) {
	kb.res, kb.err = b.run(ctx, keyHash, kb.n)
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

// result is the KeyUse of the use at position pos of the batch.
func (kb *keyBatch) result(pos int) (KeyUse, error) {
	if kb.err != nil {
		return KeyUse{}, kb.err
	}
	u := kb.res
	u.Count = u.Count - kb.n + pos + 1
	return u, nil
}
