// Package realtime is the change feed at /api/realtime: a WebSocket on which
// a signed-in client subscribes to topics (products, sales, stores,
// whitelist) and receives every change it may see, from whichever server
// instance made it.
//
// Changes travel through PostgreSQL: triggers (migrations/00009_realtime.sql)
// NOTIFY a small payload of ids and routing keys on commit; each instance
// holds one LISTEN connection on the direct database URL (LISTEN cannot
// pass PgBouncer's transaction mode), and fans each change out in commit
// order to the clients whose subscriptions match and who may see it. The
// record (never a sensitive column) comes with the notification, as the
// change left the row; a row too large for NOTIFY's 8000 bytes is loaded
// by id instead (in batches of one query per table, only for changes
// someone will receive) and shows the row as it is then. A slow client is
// disconnected, never waited for: each has a bounded send buffer.
package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store"
)

// Channel is the PostgreSQL NOTIFY channel the triggers announce changes on.
const Channel = "vectabase_changes"

// Config is the realtime configuration, filled from the environment in cmd/.
type Config struct {
	// MaxSubscriptions caps the subscriptions of one connection.
	MaxSubscriptions int `env:"REALTIME_MAX_SUBSCRIPTIONS" envDefault:"32"`
	// SendBuffer is how many messages may wait for one client; a client
	// that falls further behind is disconnected.
	SendBuffer int `env:"REALTIME_SEND_BUFFER" envDefault:"256"`
	// PingInterval is how often the server pings; a client that has not
	// answered (or sent anything) within two intervals is disconnected.
	PingInterval time.Duration `env:"REALTIME_PING_INTERVAL" envDefault:"25s"`
	// AuthTimeout is how long a connection without an access_token query
	// has to send its auth message.
	AuthTimeout time.Duration `env:"REALTIME_AUTH_TIMEOUT" envDefault:"10s"`
	// RecheckInterval is how often a connection's token is verified again,
	// so that logout, revocation and expiry end the feed too.
	RecheckInterval time.Duration `env:"REALTIME_RECHECK_INTERVAL" envDefault:"1m"`
	// MaxMessageBytes bounds a message from a client.
	MaxMessageBytes int64 `env:"REALTIME_MAX_MESSAGE_BYTES" envDefault:"8192"`
	// MaxConnections caps this instance's open sockets; past it an upgrade
	// is refused with 503, so a flood of idle sockets cannot exhaust memory.
	MaxConnections int `env:"REALTIME_MAX_CONNECTIONS" envDefault:"10000"`
}

func (c Config) withDefaults() Config {
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 32
	}
	if c.SendBuffer <= 0 {
		c.SendBuffer = 256
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = 10 * time.Second
	}
	if c.RecheckInterval <= 0 {
		c.RecheckInterval = time.Minute
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 8192
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	return c
}

// Authenticator verifies an access token: the auth service.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
}

var _ Authenticator = (*auth.Service)(nil)

// Hub is one instance's side of the feed: its LISTEN connection and its
// connected clients.
type Hub struct {
	cfg       Config
	db        *store.DB
	directURL string
	authn     Authenticator
	log       zerolog.Logger
	m         *metrics

	mu      sync.RWMutex
	clients map[*client]struct{}
	// subs files every subscription by its most selective filter key
	// (index.go), so a change's audience is looked up, not searched for.
	subs subIndex

	// seq numbers the changes dispatched, and targets is the dispatcher's
	// scratch space, reused from one batch to the next: both belong to
	// the dispatcher (one goroutine).
	seq     uint64
	targets [][]target

	listening atomic.Bool
	// recordTimeout bounds loading one changed record.
	recordTimeout time.Duration

	// queue carries notifications from the listener to the dispatcher.
	queue chan notification

	// ctx ends every connection when the hub closes.
	ctx      context.Context
	cancel   context.CancelFunc
	upgrader fiber.Handler
}

// New builds the hub. directURL is a direct PostgreSQL connection string
// (store.Config.DirectConnString()); db loads the changed records. Run
// starts listening.
func New(cfg Config, db *store.DB, directURL string, authn Authenticator, log zerolog.Logger, reg prometheus.Registerer) (*Hub, error) {
	if db == nil || authn == nil || directURL == "" {
		return nil, errors.New("realtime: New needs a database, a direct URL and an authenticator")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		ctx:           ctx,
		cancel:        cancel,
		cfg:           cfg.withDefaults(),
		db:            db,
		directURL:     directURL,
		authn:         authn,
		log:           log.With().Str("area", "realtime").Logger(),
		m:             m,
		clients:       make(map[*client]struct{}),
		subs:          subIndex{},
		queue:         make(chan notification, 4096),
		recordTimeout: 5 * time.Second,
	}
	h.upgrader = h.newUpgrader()
	return h, nil
}

// Listening reports whether the LISTEN connection is up, so changes made
// now will reach this instance's clients.
func (h *Hub) Listening() bool { return h.listening.Load() }

// Connections is the number of open sockets.
func (h *Hub) Connections() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// add registers a connection, with whatever subscriptions it holds
// already (none, for a new socket).
func (h *Hub) add(c *client) {
	c.mu.Lock()
	userID, subs := c.userID, append([]subscription(nil), c.subs...)
	c.mu.Unlock()
	h.mu.Lock()
	h.clients[c] = struct{}{}
	if h.subs == nil {
		h.subs = subIndex{}
	}
	for _, s := range subs {
		h.subs.add(c, userID, s)
	}
	h.mu.Unlock()
	h.m.connections.Inc()
}

// remove unregisters a connection and its subscriptions.
func (h *Hub) remove(c *client) {
	c.mu.Lock()
	subs := append([]subscription(nil), c.subs...)
	c.mu.Unlock()
	h.mu.Lock()
	_, ok := h.clients[c]
	delete(h.clients, c)
	for _, s := range subs {
		h.subs.remove(c, s)
	}
	h.mu.Unlock()
	if ok {
		h.m.connections.Dec()
	}
}

// index files a new subscription of a registered client.
func (h *Hub) index(c *client, userID string, s subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		h.subs.add(c, userID, s)
	}
}

// unindex takes a subscription out of the index.
func (h *Hub) unindex(c *client, s subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs.remove(c, s)
}

// Close disconnects every client, telling each the server is going away.
func (h *Hub) Close() {
	h.cancel()
	h.mu.RLock()
	cs := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	h.mu.RUnlock()
	for _, c := range cs {
		c.shutdown(closeGoingAway, "server shutting down")
	}
}

// maxBatch bounds how many queued notifications one dispatch round takes.
const maxBatch = 256

// dispatchLoop delivers queued notifications in order until ctx ends.
// Under load it takes what has queued up as one batch, so the records of
// many changes load in one query per table instead of one per change.
func (h *Hub) dispatchLoop(ctx context.Context) {
	batch := make([]notification, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-h.queue:
			batch = append(batch[:0], n)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case n := <-h.queue:
				batch = append(batch, n)
			default:
				break more
			}
		}
		h.dispatch(ctx, batch)
	}
}

// dispatch delivers notifications, in order, to every client that
// subscribed to them and may see them. Records are loaded only for changes
// someone will receive. Each event is encoded and framed once, and the
// same frame is queued to each of its clients. It never blocks on a
// client.
func (h *Hub) dispatch(ctx context.Context, batch []notification) {
	for len(h.targets) < len(batch) {
		h.targets = append(h.targets, nil)
	}
	targets := h.targets[:len(batch)]
	need := map[string][]string{} // table -> ids whose record is needed
	h.mu.RLock()
	for i := range batch {
		n := &batch[i]
		h.seq++
		targets[i] = h.subs.audience(n, h.seq, targets[i][:0])
		if len(targets[i]) > 0 && n.Action != "delete" && n.Record == nil {
			need[n.Table] = append(need[n.Table], n.ID)
		}
	}
	h.mu.RUnlock()

	records := map[string]map[string]any{}
	for table, ids := range need {
		rctx, cancel := context.WithTimeout(ctx, h.recordTimeout)
		recs, err := h.db.ChangedRecords(rctx, table, ids)
		cancel()
		if err != nil {
			// The events of this table are dropped (their records are
			// absent below); the error names no value.
			h.log.Warn().Err(err).Str("table", table).Int("changes", len(ids)).Msg("realtime: loading changed records failed; events dropped")
			continue
		}
		records[table] = recs
	}
	for i, n := range batch {
		ts := targets[i]
		if len(ts) == 0 {
			continue
		}
		msg, rec, ok := h.render(n, records[n.Table])
		if !ok {
			clear(ts)
			continue
		}
		frame := textFrame(msg)
		// A change that takes the row out of what non-owners may see
		// reaches them as the id and a removed marker only, never the new
		// field values (the owner still gets the whole record).
		removal := removesFromPublic(n, rec)
		var removed []byte
		if removal {
			if b := h.removedMessage(n); b != nil {
				removed = textFrame(b)
			}
		}
		h.m.events.WithLabelValues(n.Topic).Inc()
		for _, t := range ts {
			if removal && (n.OwnerID == "" || t.userID != n.OwnerID) {
				if removed != nil {
					t.c.enqueue(removed)
				}
				continue
			}
			t.c.enqueue(frame)
		}
		// The scratch space must not keep closed clients alive.
		clear(ts)
	}
}

// render builds the change event. The record is the one announced, as the
// change left the row; for a row too large to announce it is the row as
// loaded now, and an insert or update whose row is gone by then (deleted
// since) is skipped: its delete event follows.
func (h *Hub) render(n notification, records map[string]any) ([]byte, any, bool) {
	ev := changeMessage{Type: "change", Topic: n.Topic, Kind: n.kind(), Action: n.Action, ID: n.ID}
	switch {
	case n.Record != nil:
		rec, err := decodeRecord(n.Table, n.Record)
		if err != nil {
			h.log.Warn().Err(err).Str("table", n.Table).Msg("realtime: event dropped")
			return nil, nil, false
		}
		ev.Record = rec
	case n.Action == "delete":
		ev.Record = n.deletedRecord()
	default:
		rec, ok := records[n.ID]
		if !ok {
			return nil, nil, false
		}
		ev.Record = rec
	}
	b, err := json.Marshal(ev)
	if err != nil {
		h.log.Error().Err(err).Str("table", n.Table).Msg("realtime: encoding event failed")
		return nil, nil, false
	}
	return b, ev.Record, true
}

// removesFromPublic reports whether the change takes a row out of what
// users other than its owner may see: an update that leaves a product
// inactive (announced publicly once, so listings can drop it).
func removesFromPublic(n notification, rec any) bool {
	if n.Table != "products" || n.Action != "update" {
		return false
	}
	switch p := rec.(type) {
	case *store.ChangedProduct:
		return !p.IsActive
	case store.ChangedProduct:
		return !p.IsActive
	}
	return false
}

// removedMessage is the event of a row leaving a subscriber's view:
// {"type":"change","topic":…,"action":"removed","id":…,"removed":true},
// with no record.
func (h *Hub) removedMessage(n notification) []byte {
	b, err := json.Marshal(removedMessage{Type: "change", Topic: n.Topic, Kind: n.kind(), Action: "removed", ID: n.ID, Removed: true})
	if err != nil {
		h.log.Error().Err(err).Msg("realtime: encoding removed event failed")
		return nil
	}
	return b
}

// broadcast sends msg to every client (resync after the listener lost
// changes).
func (h *Hub) broadcast(msg []byte) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if c.authenticated() {
			c.enqueue(msg)
		}
	}
}

type metrics struct {
	connections prometheus.Gauge
	events      *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	reconnects  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.connections, err = server.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vectabase_realtime_connections", Help: "Open realtime WebSocket connections on this instance.",
	})); err != nil {
		return nil, err
	}
	if m.events, err = server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_realtime_events_total", Help: "Changes fanned out to at least one client, by topic.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.dropped, err = server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_realtime_disconnects_total", Help: "Connections the server ended, by reason (slow, unauthorized, timeout).",
	}, []string{"reason"})); err != nil {
		return nil, err
	}
	if m.reconnects, err = server.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vectabase_realtime_listener_reconnects_total", Help: "Times the LISTEN connection was re-established after a failure.",
	})); err != nil {
		return nil, err
	}
	return &m, nil
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
