package realtime

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 10 * time.Second
	// idleCheck is how long the listener waits for a notification before
	// it pings the connection: a connection that died without a FIN (a
	// dropped network, a failed-over server) would otherwise block forever.
	idleCheck = 30 * time.Second
)

// resyncMessage tells clients that the listener was down for a moment and
// changes may have been missed: they should reload what they show. It
// goes out as the connection comes back, possibly ahead of changes still
// queued from before the loss; the point is to reload after it.
var resyncMessage = []byte(`{"type":"resync","message":"the change feed reconnected; changes may have been missed, reload current state"}`)

// Run holds the LISTEN connection until ctx ends: it connects, LISTENs,
// fans notifications out, and on any failure reconnects with exponential
// backoff (with jitter, so a fleet does not reconnect in step) and LISTENs
// again. After a reconnect every client is told to resync. Run returns
// ctx's error.
func (h *Hub) Run(ctx context.Context) error {
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		h.dispatchLoop(ctx)
	}()
	defer func() { <-dispatched }()
	backoff := backoffMin
	first := true
	for {
		err := h.listen(ctx, func() {
			backoff = backoffMin
			if !first {
				h.m.reconnects.Inc()
				h.broadcast(textFrame(resyncMessage))
			}
			first = false
		})
		h.listening.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The error is from pgx and names no secret (the URL's password
		// never appears in pgx's connect errors).
		h.log.Warn().Err(err).Dur("retryIn", backoff).Msg("realtime: LISTEN connection lost; reconnecting")
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// listen runs one LISTEN connection until it fails or ctx ends. up is
// called once the connection LISTENs.
func (h *Hub) listen(ctx context.Context, up func()) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, h.directURL)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return err
	}
	h.listening.Store(true)
	up()
	// One wait window serves every notification that arrives within it,
	// rather than a timer per notification: under load the listener only
	// reads what PostgreSQL pushes (notifications need no round trip) and
	// parses it. When a window ends the connection is pinged, busy or not.
	var (
		wctx    context.Context
		wcancel context.CancelFunc = func() {}
	)
	defer func() { wcancel() }()
	newWindow := func() {
		wcancel()
		wctx, wcancel = context.WithTimeout(ctx, idleCheck)
	}
	newWindow()
	for {
		note, err := conn.WaitForNotification(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) || pgconnTimeout(err) {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				err = conn.Ping(pctx)
				pcancel()
				if err != nil {
					return err
				}
				newWindow()
				continue
			}
			return err
		}
		n, err := parseNotification(note.Payload)
		if err != nil {
			// Only our triggers write this channel; anything else is a bug
			// or a stray NOTIFY, not worth a disconnect.
			h.log.Warn().Err(err).Msg("realtime: ignoring malformed notification")
			continue
		}
		// A full queue holds the listener back (PostgreSQL keeps the
		// notifications meanwhile) rather than dropping changes.
		select {
		case h.queue <- n:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pgconnTimeout reports a timeout error from the connection's deadline (pgx
// wraps a context deadline as a net timeout in some versions).
func pgconnTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
