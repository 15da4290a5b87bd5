package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/auth"
)

// Close codes (RFC 6455 and the 4000-4999 private range): a browser sees
// only the code and reason, so each refusal has its own code.
const (
	closeNormal       = websocket.CloseNormalClosure
	closeGoingAway    = websocket.CloseGoingAway
	closePolicy       = websocket.ClosePolicyViolation
	closeTooBig       = websocket.CloseMessageTooBig
	closeUnauthorized = 4401
	closeSlow         = 4008
)

const writeWait = 10 * time.Second

// subscription is one topic and filter a client follows.
type subscription struct {
	id     string
	topic  string
	filter map[string]string
}

// client is one WebSocket connection. One goroutine reads frames off the
// socket, the handler's goroutine acts on them (readLoop), and a writer
// goroutine owns every write of data frames; the hub reaches the client
// only through its subscription index and enqueue, which never blocks.
type client struct {
	hub *Hub
	// send queues complete text frames (textFrame); an event's frame is
	// shared by every client it goes to and never written to.
	send chan []byte
	// mark is the dispatcher's: the last change this client was taken
	// for, so a client with several matching subscriptions gets it once.
	mark uint64
	// done is closed when the connection is to end; closeCode and
	// closeText say how, and are set once, before done closes.
	done      chan struct{}
	closeOnce sync.Once
	closeCode int
	closeText string

	mu      sync.Mutex
	userID  string // "" until authenticated
	token   string // the token to verify again; never logged
	subs    []subscription
	nextSub int
}

func newClient(h *Hub) *client {
	return &client{hub: h, send: make(chan []byte, h.cfg.SendBuffer), done: make(chan struct{})}
}

func (c *client) authenticated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userID != ""
}

// wants reports whether the change is for this client: it matches one of
// its subscriptions and the user may see it.
func (c *client) wants(n notification) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.userID == "" || !n.visibleTo(c.userID) {
		return false
	}
	for _, s := range c.subs {
		if n.matches(s.topic, s.filter) {
			return true
		}
	}
	return false
}

// enqueue queues a frame for the writer without blocking. A client whose
// buffer is full has fallen behind and is disconnected: waiting for it
// would hold up every other client of the instance.
func (c *client) enqueue(msg []byte) {
	select {
	case <-c.done:
		return
	default:
	}
	select {
	case c.send <- msg:
	default:
		c.hub.m.dropped.WithLabelValues("slow").Inc()
		c.shutdown(closeSlow, "SLOW_CLIENT")
	}
}

// shutdown ends the connection with a close frame (sent by the writer).
func (c *client) shutdown(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText = code, text
		close(c.done)
	})
}

// reply queues a control answer (subscribed, errors, pong). Answers go
// through the same bounded buffer as events, so a client that floods
// requests without reading is disconnected like any slow client.
func (c *client) reply(m outMessage) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	c.enqueue(textFrame(b))
}

func (c *client) replyError(code, msg string) {
	c.reply(outMessage{Type: "error", Error: code, Message: msg})
}

// fail sends an error and then closes the connection. The close frame's
// reason is the error code: the message may be longer than a control frame
// carries. reason labels the disconnect metric.
func (c *client) fail(code, msg string, closeCode int, reason string) {
	c.replyError(code, msg)
	c.hub.m.dropped.WithLabelValues(reason).Inc()
	c.shutdown(closeCode, code)
}

// conn is what the client needs of a WebSocket connection (the Fiber
// contrib Conn embeds *websocket.Conn). Data frames are written straight
// to NetConn (see frames.go); control frames through WriteControl.
type conn interface {
	ReadMessage() (int, []byte, error)
	NetConn() net.Conn
	WriteControl(int, []byte, time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	SetReadLimit(int64)
	SetPongHandler(func(string) error)
	Close() error
}

// serve runs the connection until it ends. token is the access_token query
// parameter, if any. ws must stay valid until serve returns, and serve
// returns only when no goroutine of the connection is left.
func (h *Hub) serve(ws conn, token string) {
	ctx := h.ctx
	c := newClient(h)
	h.add(c)
	defer h.remove(c)

	ws.SetReadLimit(h.cfg.MaxMessageBytes)
	alive := func() { _ = ws.SetReadDeadline(time.Now().Add(2 * h.cfg.PingInterval)) }
	alive()
	ws.SetPongHandler(func(string) error { alive(); return nil })

	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.shutdown(closeNormal, "")
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.writeLoop(ws)
	}()
	msgs, readErr := make(chan []byte), make(chan error, 1)
	go func() {
		defer wg.Done()
		c.readFrames(ws, msgs, readErr)
	}()

	if token != "" && !c.authenticate(ctx, token) {
		return
	}
	c.readLoop(ctx, msgs, readErr, alive)
}

// readFrames reads messages off the socket for readLoop; nil stands for a
// binary frame. It ends when the socket fails or closes (the writer closes
// it when the connection ends).
func (c *client) readFrames(ws conn, msgs chan<- []byte, readErr chan<- error) {
	for {
		kind, data, err := ws.ReadMessage()
		if err != nil {
			readErr <- err
			return
		}
		if kind != websocket.TextMessage {
			data = nil
		}
		select {
		case msgs <- data:
		case <-c.done:
			return
		}
	}
}

// authenticate verifies token and, on success, binds the connection to its
// user. A later auth message may present a fresh token of the same user
// (before the old one expires); another user's token is refused.
func (c *client) authenticate(ctx context.Context, token string) bool {
	p, err := c.verify(ctx, token)
	if err != nil {
		if isUnauthorized(err) {
			c.fail(vectabase.EUNAUTHORIZED, "missing, invalid or expired access token", closeUnauthorized, "unauthorized")
		} else {
			c.hub.log.Warn().Err(err).Msg("realtime: token verification failed")
			c.fail(vectabase.EUNAVAILABLE, "cannot verify the access token now; try again", closeGoingAway, "unavailable")
		}
		return false
	}
	c.mu.Lock()
	prev := c.userID
	if prev != "" && prev != p.UserID {
		c.mu.Unlock()
		c.fail(vectabase.EFORBIDDEN, "a connection stays with the user it authenticated as", closePolicy, "unauthorized")
		return false
	}
	c.userID, c.token = p.UserID, token
	c.mu.Unlock()
	c.reply(outMessage{Type: "authenticated", UserID: p.UserID})
	return true
}

// recheck verifies the connection's token again, so that logout, session
// revocation and expiry end the feed too. Only a definite refusal ends
// it: a database hiccup must not disconnect every client at once.
func (c *client) recheck(ctx context.Context) bool {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok == "" {
		return true
	}
	_, err := c.verify(ctx, tok)
	switch {
	case err == nil:
		return true
	case isUnauthorized(err):
		c.fail(vectabase.EUNAUTHORIZED, "the access token expired or its session ended; reconnect with a fresh token", closeUnauthorized, "unauthorized")
		return false
	default:
		c.hub.log.Warn().Err(err).Msg("realtime: token re-verification failed; keeping the connection")
		return true
	}
}

func (c *client) verify(ctx context.Context, token string) (auth.Principal, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.hub.authn.Authenticate(ctx, token)
}

func isUnauthorized(err error) bool {
	var verr *vectabase.Error
	return errors.As(err, &verr) && verr.Code == vectabase.EUNAUTHORIZED
}

// readLoop handles the client's messages until the connection ends.
func (c *client) readLoop(ctx context.Context, msgs <-chan []byte, readErr <-chan error, alive func()) {
	// Without an access_token query, the auth message must come within
	// AuthTimeout.
	var authDeadline <-chan time.Time
	if !c.authenticated() {
		t := time.NewTimer(c.hub.cfg.AuthTimeout)
		defer t.Stop()
		authDeadline = t.C
	}
	recheck := time.NewTicker(c.hub.cfg.RecheckInterval)
	defer recheck.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ctx.Done():
			c.shutdown(closeGoingAway, "server shutting down")
			return
		case <-authDeadline:
			if !c.authenticated() {
				c.fail(vectabase.EUNAUTHORIZED, "authentication required: no auth message within "+c.hub.cfg.AuthTimeout.String(), closeUnauthorized, "unauthorized")
				return
			}
		case err := <-readErr:
			if errors.Is(err, websocket.ErrReadLimit) {
				c.fail(vectabase.EPAYLOADTOOLARGE, "message larger than "+strconv.FormatInt(c.hub.cfg.MaxMessageBytes, 10)+" bytes", closeTooBig, "too_big")
			} else {
				// The client left, or stopped answering pings.
				c.shutdown(closeNormal, "")
			}
			return
		case <-recheck.C:
			if !c.recheck(ctx) {
				return
			}
		case data := <-msgs:
			alive()
			if data == nil {
				if !c.authenticated() {
					c.fail(vectabase.EUNAUTHORIZED, "authentication required: the first message must be {\"type\":\"auth\",\"token\":\"…\"}", closeUnauthorized, "unauthorized")
					return
				}
				c.replyError(vectabase.EBADREQUEST, "binary messages are not part of the protocol; send JSON text")
				continue
			}
			if !c.handle(ctx, data) {
				return
			}
		}
	}
}

// handle acts on one message; false ends the connection.
func (c *client) handle(ctx context.Context, data []byte) bool {
	m, err := parseMessage(data)
	authed := c.authenticated()
	if err != nil {
		if !authed {
			c.fail(vectabase.EUNAUTHORIZED, "authentication required: the first message must be {\"type\":\"auth\",\"token\":\"…\"} ("+err.Error()+")", closeUnauthorized, "unauthorized")
			return false
		}
		c.replyError(vectabase.EBADREQUEST, err.Error())
		return true
	}
	if !authed && m.Type != msgAuth {
		c.fail(vectabase.EUNAUTHORIZED, "authentication required: the first message must be {\"type\":\"auth\",\"token\":\"…\"}", closeUnauthorized, "unauthorized")
		return false
	}
	switch m.Type {
	case msgAuth:
		return c.authenticate(ctx, m.Token)
	case msgPing:
		c.reply(outMessage{Type: "pong"})
	case msgSubscribe:
		c.subscribe(m)
	case msgUnsubscribe:
		c.unsubscribe(m)
	}
	return true
}

func (c *client) subscribe(m inMessage) {
	c.mu.Lock()
	for _, s := range c.subs {
		if s.topic == m.Topic && sameFilter(s.filter, m.Filter) {
			c.mu.Unlock()
			// Subscribing twice is harmless: answer with the existing one.
			c.reply(outMessage{Type: "subscribed", Subscription: s.id, Topic: s.topic, Filter: s.filter})
			return
		}
	}
	if len(c.subs) >= c.hub.cfg.MaxSubscriptions {
		c.mu.Unlock()
		c.replyError(vectabase.EBADREQUEST, "at most "+strconv.Itoa(c.hub.cfg.MaxSubscriptions)+" subscriptions per connection; unsubscribe first")
		return
	}
	c.nextSub++
	s := subscription{id: "s" + strconv.Itoa(c.nextSub), topic: m.Topic, filter: m.Filter}
	c.subs = append(c.subs, s)
	userID := c.userID
	c.mu.Unlock()
	// Filed after c.mu is released: the dispatcher holds the hub's lock
	// while it looks at clients, so the hub's lock is never taken under a
	// client's. The index changes only from this client's own goroutine.
	c.hub.index(c, userID, s)
	c.reply(outMessage{Type: "subscribed", Subscription: s.id, Topic: s.topic, Filter: s.filter})
}

// unsubscribe removes the subscription named by id, or the one with the
// given topic and filter.
func (c *client) unsubscribe(m inMessage) {
	c.mu.Lock()
	var removed *subscription
	for i, s := range c.subs {
		if (m.Subscription != "" && s.id == m.Subscription) ||
			(m.Subscription == "" && s.topic == m.Topic && sameFilter(s.filter, m.Filter)) {
			removed = &s
			c.subs = append(c.subs[:i:i], c.subs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if removed == nil {
		c.replyError(vectabase.ENOTFOUND, "no such subscription on this connection")
		return
	}
	c.hub.unindex(c, *removed)
	c.reply(outMessage{Type: "unsubscribed", Subscription: removed.id, Topic: removed.topic, Filter: removed.filter})
}

// writeLoop owns the socket's data writes: queued frames, coalesced into
// one write when several have queued up, then pings, and the close frame
// when the connection ends.
func (c *client) writeLoop(ws conn) {
	ping := time.NewTicker(c.hub.cfg.PingInterval)
	defer ping.Stop()
	defer ws.Close()
	nc := ws.NetConn()
	for {
		select {
		case f := <-c.send:
			if err := c.writeFrames(nc, f); err != nil {
				c.shutdown(closeNormal, "")
				return
			}
		case <-ping.C:
			if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				c.shutdown(closeNormal, "")
				return
			}
		case <-c.done:
			// Flush what was queued before the end (an error message
			// explaining the close), then say goodbye.
			// writeFrames takes what has queued behind the frame it is
			// given, so drain without blocking.
			if c.closeCode != closeSlow {
			flush:
				for {
					select {
					case f := <-c.send:
						if c.writeFrames(nc, f) != nil {
							return
						}
					default:
						break flush
					}
				}
			}
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.closeText), time.Now().Add(time.Second))
			return
		}
	}
}

// writeFrames writes first and whatever else is queued already (up to
// maxCoalesce bytes) in one write.
func (c *client) writeFrames(nc net.Conn, first []byte) error {
	// Set on every write: the library's pong (answering a client's ping
	// from the reading goroutine) sets a deadline of its own, one second
	// ahead, on the same socket.
	_ = nc.SetWriteDeadline(time.Now().Add(writeWait))
	if len(c.send) == 0 {
		_, err := nc.Write(first)
		return err
	}
	bp := batchBufs.Get().(*[]byte)
	buf := append((*bp)[:0], first...)
more:
	for len(buf) < maxCoalesce {
		select {
		case f := <-c.send:
			buf = append(buf, f...)
		default:
			break more
		}
	}
	_, err := nc.Write(buf)
	if cap(buf) <= 4*maxCoalesce {
		*bp = buf[:0]
		batchBufs.Put(bp)
	}
	return err
}
