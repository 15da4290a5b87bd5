package realtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/server/realtime"
)

// The model of Property 17, written from the contract (section 8) and the
// visibility rules the realtime package documents, not from its code: who
// owns which row, which rows are public, which filter keys a change
// carries.

// change is one change event the model expects PostgreSQL to announce.
type change struct {
	topic, action, id string
	owner             string // owner of the row, its store or its system
	buyer             string // sales: the buyer
	public            bool   // products: visible to everyone signed in
	keys              map[string]string
	marker            string // the record field the test set, to tell versions apart
	// removed: a product update that took the row out of public view; those
	// who saw it only because it was public get the id and a "removed"
	// marker, never the new fields.
	removed bool
}

func (c change) String() string { return c.topic + " " + c.action + " " + c.id + " " + c.marker }

// seenBy is the event user receives for c: the change itself, or for a
// non-owner of a product that left public view only its removal.
func (c change) seenBy(user string) string {
	if c.removed && c.owner != user {
		return c.topic + " removed " + c.id + " "
	}
	return c.String()
}

// visibleTo is who may see a change: the owner of the row (or of the store
// or system it hangs off), the buyer of a sale, and anyone signed in for a
// product that is public (active now, or active until this change).
func (c change) visibleTo(user string) bool {
	switch {
	case c.owner == user:
		return true
	case c.topic == "products":
		return c.public
	case c.topic == "sales":
		return c.buyer == user
	}
	return false
}

// sub is one subscription: a topic and a filter whose every key must
// equal the change's.
type sub struct {
	topic  string
	filter map[string]string
}

func (s sub) matches(c change) bool {
	if s.topic != c.topic {
		return false
	}
	for k, v := range s.filter {
		if c.keys[k] != v {
			return false
		}
	}
	return true
}

type (
	mStore   struct{ owner, name string }
	mProduct struct {
		store, name string
		active      bool
	}
	mSale struct {
		store, product, buyer string
		amount                int
	}
	mSystem struct{ owner, store, name string }
	mPlayer struct{ system, username string }
)

// world is the model's state and the plan of statements that changes it.
type world struct {
	users    []user
	stores   map[string]*mStore
	products map[string]*mProduct
	sales    map[string]*mSale
	systems  map[string]*mSystem
	players  map[string]*mPlayer
	sold     map[string]bool // stores and products with a sale (not deletable)
	ids      map[string][]string
	steps    []step
	n        int
}

// step is one change, made through one instance, and the changes it
// makes: a statement on the instance's pool, or (when api is set) a call
// of the instance's HTTP API by the owner.
type step struct {
	instance int
	sql      string
	args     []any
	api      *apiCall
	changes  []change
}

// apiCall is a marketplace API request by a user and the status it must
// answer.
type apiCall struct {
	as     user
	method string
	path   string
	body   map[string]any
	status int
}

// marker is a unique value for the record field the test sets; it is also
// a valid Roblox username.
func (w *world) marker() string { w.n++; return fmt.Sprintf("m%d_%s", w.n, uuid.NewString()[:8]) }

func (w *world) userByID(id string) user {
	for _, u := range w.users {
		if u.id == id {
			return u
		}
	}
	panic("no user " + id)
}

// viaAPI makes the step the owner's request to the HTTP API instead of a
// statement, when drawn so.
func (w *world) viaAPI(rt *rapid.T, st *step, label, owner, method, path string, body map[string]any, status int) {
	if rapid.Bool().Draw(rt, label+"via API") {
		st.api = &apiCall{as: w.userByID(owner), method: method, path: path, body: body, status: status}
	}
}

func (w *world) newID(kind string) string {
	id := uuid.NewString()
	w.ids[kind] = append(w.ids[kind], id)
	return id
}

// live lists the ids of kind still in m, in the order they were created
// (not sorted by the random ids), so a rapid case replays the same choices.
func live[T any](w *world, kind string, m map[string]*T) []string {
	var out []string
	for _, id := range w.ids[kind] {
		if _, ok := m[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

func (w *world) storeChange(action, id string) change {
	s := w.stores[id]
	return change{topic: "stores", action: action, id: id, owner: s.owner, marker: s.name,
		keys: map[string]string{"id": id, "storeId": id}}
}

func (w *world) productChange(action, id string, public bool) change {
	p := w.products[id]
	return change{topic: "products", action: action, id: id, owner: w.stores[p.store].owner, public: public, marker: p.name,
		keys: map[string]string{"id": id, "storeId": p.store}}
}

func (w *world) saleChange(action, id string) change {
	s := w.sales[id]
	return change{topic: "sales", action: action, id: id, owner: w.stores[s.store].owner, buyer: s.buyer, marker: fmt.Sprint(s.amount),
		keys: map[string]string{"id": id, "storeId": s.store, "productId": s.product}}
}

func (w *world) systemChange(action, id string) change {
	s := w.systems[id]
	return change{topic: "whitelist", action: action, id: id, owner: s.owner, marker: s.name,
		keys: map[string]string{"id": id, "systemId": id, "storeId": s.store}}
}

func (w *world) playerChange(action, id string) change {
	p := w.players[id]
	s := w.systems[p.system]
	return change{topic: "whitelist", action: action, id: id, owner: s.owner, marker: p.username,
		keys: map[string]string{"id": id, "systemId": p.system, "storeId": s.store}}
}

// nullable is an id, or SQL NULL for "".
func nullable(id string) any {
	if id == "" {
		return nil
	}
	return id
}

// drawStep draws one statement that the model allows now, applies it to
// the model and records the changes it makes.
func (w *world) drawStep(rt *rapid.T, i int) {
	label := fmt.Sprintf("step %d ", i)
	var kinds []string
	kinds = append(kinds, "store+", "system+")
	if len(w.stores) > 0 {
		kinds = append(kinds, "store~", "product+", "product+")
		for id := range w.stores {
			if !w.sold[id] {
				kinds = append(kinds, "store-")
				break
			}
		}
	}
	if len(w.products) > 0 {
		kinds = append(kinds, "product~", "product~", "sale+", "sale+")
		for id := range w.products {
			if !w.sold[id] {
				kinds = append(kinds, "product-")
				break
			}
		}
	}
	if len(w.sales) > 0 {
		kinds = append(kinds, "sale~")
	}
	if len(w.systems) > 0 {
		kinds = append(kinds, "system~", "system-", "player+", "player+")
	}
	if len(w.players) > 0 {
		kinds = append(kinds, "player~", "player-")
	}
	kind := rapid.SampledFrom(kinds).Draw(rt, label+"kind")
	st := step{instance: rapid.IntRange(0, 1).Draw(rt, label+"instance")}
	user := func() string { return rapid.SampledFrom(w.users).Draw(rt, label+"user").id }
	switch kind {
	case "store+":
		id := w.newID("store")
		w.stores[id] = &mStore{owner: user(), name: w.marker()}
		st.sql, st.args = `INSERT INTO stores (id, owner_id, name, slug) VALUES ($1, $2, $3, $4)`, []any{id, w.stores[id].owner, w.stores[id].name, "p17-" + id}
		st.changes = []change{w.storeChange("insert", id)}
	case "store~":
		id := rapid.SampledFrom(live(w, "store", w.stores)).Draw(rt, label+"store")
		w.stores[id].name = w.marker()
		st.sql, st.args = `UPDATE stores SET name = $2 WHERE id = $1`, []any{id, w.stores[id].name}
		w.viaAPI(rt, &st, label, w.stores[id].owner, "PATCH", "/api/stores/"+id, map[string]any{"name": w.stores[id].name}, 200)
		st.changes = []change{w.storeChange("update", id)}
	case "store-":
		var unsold []string
		for _, id := range live(w, "store", w.stores) {
			if !w.sold[id] {
				unsold = append(unsold, id)
			}
		}
		id := rapid.SampledFrom(unsold).Draw(rt, label+"store")
		st.sql, st.args = `DELETE FROM stores WHERE id = $1`, []any{id}
		w.viaAPI(rt, &st, label, w.stores[id].owner, "DELETE", "/api/stores/"+id, nil, 204)
		// Its products go with it; its whitelist systems stay, without a
		// store; then the store itself.
		for _, pid := range live(w, "product", w.products) {
			if p := w.products[pid]; p.store == id {
				st.changes = append(st.changes, w.productChange("delete", pid, p.active))
				delete(w.products, pid)
			}
		}
		for _, sid := range live(w, "system", w.systems) {
			if w.systems[sid].store == id {
				w.systems[sid].store = ""
				st.changes = append(st.changes, w.systemChange("update", sid))
			}
		}
		st.changes = append(st.changes, w.storeChange("delete", id))
		delete(w.stores, id)
	case "product+":
		id := w.newID("product")
		store := rapid.SampledFrom(live(w, "store", w.stores)).Draw(rt, label+"store")
		w.products[id] = &mProduct{store: store, name: w.marker(), active: rapid.Bool().Draw(rt, label+"active")}
		st.sql, st.args = `INSERT INTO products (id, store_id, name, price_cents, is_active) VALUES ($1, $2, $3, 100, $4)`, []any{id, store, w.products[id].name, w.products[id].active}
		st.changes = []change{w.productChange("insert", id, w.products[id].active)}
	case "product~":
		id := rapid.SampledFrom(live(w, "product", w.products)).Draw(rt, label+"product")
		p := w.products[id]
		was := p.active
		p.name, p.active = w.marker(), rapid.Bool().Draw(rt, label+"active")
		st.sql, st.args = `UPDATE products SET name = $2, is_active = $3 WHERE id = $1`, []any{id, p.name, p.active}
		w.viaAPI(rt, &st, label, w.stores[p.store].owner, "PATCH", "/api/products/"+id, map[string]any{"name": p.name, "isActive": p.active}, 200)
		// A product that stops being active is announced publicly once
		// more, so public listings can drop it: as its removal only.
		ch := w.productChange("update", id, p.active || was)
		ch.removed = was && !p.active
		st.changes = []change{ch}
	case "product-":
		var unsold []string
		for _, id := range live(w, "product", w.products) {
			if !w.sold[id] {
				unsold = append(unsold, id)
			}
		}
		id := rapid.SampledFrom(unsold).Draw(rt, label+"product")
		st.sql, st.args = `DELETE FROM products WHERE id = $1`, []any{id}
		w.viaAPI(rt, &st, label, w.stores[w.products[id].store].owner, "DELETE", "/api/products/"+id, nil, 204)
		st.changes = []change{w.productChange("delete", id, w.products[id].active)}
		delete(w.products, id)
	case "sale+":
		id := w.newID("sale")
		pid := rapid.SampledFrom(live(w, "product", w.products)).Draw(rt, label+"product")
		buyer := ""
		if rapid.IntRange(0, 3).Draw(rt, label+"has buyer") > 0 {
			buyer = user()
		}
		w.n++
		s := &mSale{store: w.products[pid].store, product: pid, buyer: buyer, amount: 1000 + w.n}
		w.sales[id] = s
		w.sold[pid], w.sold[s.store] = true, true
		st.sql, st.args = `INSERT INTO sales (id, product_id, store_id, buyer_id, amount_cents) VALUES ($1, $2, $3, $4, $5)`, []any{id, pid, s.store, nullable(buyer), s.amount}
		st.changes = []change{w.saleChange("insert", id)}
	case "sale~":
		id := rapid.SampledFrom(live(w, "sale", w.sales)).Draw(rt, label+"sale")
		w.n++
		w.sales[id].amount = 1000 + w.n
		st.sql, st.args = `UPDATE sales SET amount_cents = $2 WHERE id = $1`, []any{id, w.sales[id].amount}
		st.changes = []change{w.saleChange("update", id)}
	case "system+":
		id := w.newID("system")
		owner := user()
		// A system belongs to one of its owner's stores, or to none.
		var own []string
		for _, sid := range live(w, "store", w.stores) {
			if w.stores[sid].owner == owner {
				own = append(own, sid)
			}
		}
		store := rapid.SampledFrom(append([]string{""}, own...)).Draw(rt, label+"store")
		w.systems[id] = &mSystem{owner: owner, store: store, name: w.marker()}
		st.sql, st.args = `INSERT INTO whitelist_systems (id, owner_id, store_id, name) VALUES ($1, $2, $3, $4)`, []any{id, owner, nullable(store), w.systems[id].name}
		st.changes = []change{w.systemChange("insert", id)}
	case "system~":
		id := rapid.SampledFrom(live(w, "system", w.systems)).Draw(rt, label+"system")
		w.systems[id].name = w.marker()
		st.sql, st.args = `UPDATE whitelist_systems SET name = $2 WHERE id = $1`, []any{id, w.systems[id].name}
		w.viaAPI(rt, &st, label, w.systems[id].owner, "PATCH", "/api/whitelist/systems/"+id, map[string]any{"name": w.systems[id].name}, 200)
		st.changes = []change{w.systemChange("update", id)}
	case "system-":
		id := rapid.SampledFrom(live(w, "system", w.systems)).Draw(rt, label+"system")
		st.sql, st.args = `DELETE FROM whitelist_systems WHERE id = $1`, []any{id}
		w.viaAPI(rt, &st, label, w.systems[id].owner, "DELETE", "/api/whitelist/systems/"+id, nil, 204)
		for _, pid := range live(w, "player", w.players) {
			if w.players[pid].system == id {
				st.changes = append(st.changes, w.playerChange("delete", pid))
				delete(w.players, pid)
			}
		}
		st.changes = append(st.changes, w.systemChange("delete", id))
		delete(w.systems, id)
	case "player+":
		id := w.newID("player")
		system := rapid.SampledFrom(live(w, "system", w.systems)).Draw(rt, label+"system")
		w.players[id] = &mPlayer{system: system, username: w.marker()}
		w.n++
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		// The license key columns are opaque here: a keyring-shaped
		// ciphertext (the schema checks the shape) and a 32-byte index.
		ct := append([]byte{0x01}, key...)
		st.sql, st.args = `INSERT INTO whitelist_users (id, system_id, roblox_user_id, roblox_username, license_key, license_key_bidx) VALUES ($1, $2, $3, $4, $5, $6)`,
			[]any{id, system, w.n, w.players[id].username, ct, key}
		st.changes = []change{w.playerChange("insert", id)}
	case "player~":
		id := rapid.SampledFrom(live(w, "player", w.players)).Draw(rt, label+"player")
		w.players[id].username = w.marker()
		st.sql, st.args = `UPDATE whitelist_users SET roblox_username = $2 WHERE id = $1`, []any{id, w.players[id].username}
		sys := w.players[id].system
		w.viaAPI(rt, &st, label, w.systems[sys].owner, "PATCH", "/api/whitelist/systems/"+sys+"/users/"+id, map[string]any{"robloxUsername": w.players[id].username}, 200)
		st.changes = []change{w.playerChange("update", id)}
	case "player-":
		id := rapid.SampledFrom(live(w, "player", w.players)).Draw(rt, label+"player")
		st.sql, st.args = `DELETE FROM whitelist_users WHERE id = $1`, []any{id}
		sys := w.players[id].system
		w.viaAPI(rt, &st, label, w.systems[sys].owner, "DELETE", "/api/whitelist/systems/"+sys+"/users/"+id, nil, 204)
		st.changes = []change{w.playerChange("delete", id)}
		delete(w.players, id)
	}
	w.steps = append(w.steps, st)
}

// filterValues are, per filter key, the ids a subscription may name: the
// plan's rows of that kind, and one id no row has.
func (w *world) filterValues(topic, key string) []string {
	stray := "00000000-0000-4000-8000-000000000017"
	var ids []string
	switch key {
	case "storeId":
		ids = w.ids["store"]
	case "productId":
		ids = w.ids["product"]
	case "systemId":
		ids = w.ids["system"]
	case "id":
		switch topic {
		case "stores":
			ids = w.ids["store"]
		case "products":
			ids = w.ids["product"]
		case "sales":
			ids = w.ids["sale"]
		case "whitelist":
			ids = append(append([]string{}, w.ids["system"]...), w.ids["player"]...)
		}
	}
	return append([]string{stray}, ids...)
}

// filterKeys are the filter keys of each topic (contract section 8).
var filterKeys = map[string][]string{
	"products":  {"id", "storeId"},
	"sales":     {"id", "storeId", "productId"},
	"stores":    {"id", "storeId"},
	"whitelist": {"id", "storeId", "systemId"},
}

// wsClient is one subscriber for the property: its own reads bounded in
// time, failing the rapid case rather than the test.
type wsClient struct {
	conn     *websocket.Conn
	user     user
	instance int
	subs     []sub
	sentinel string // a store of the client's user that marks start and end
}

func (c *wsClient) send(rt *rapid.T, v any) {
	b, _ := json.Marshal(v)
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		rt.Fatalf("WriteMessage err = %v, want nil", err)
	}
}

func (c *wsClient) read(rt *rapid.T) message {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		rt.Fatalf("client of %s on instance %d: reading: %v", c.user.email, c.instance, err)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		rt.Fatalf("server sent non-JSON: %s", b)
	}
	m.raw = b
	return m
}

// until reads change events until the sentinel store's update carrying
// mark, and returns those before it. At most 1000 messages.
func (c *wsClient) until(rt *rapid.T, mark string) []message {
	var got []message
	for range 1000 {
		m := c.read(rt)
		if m.Type != "change" {
			rt.Fatalf("got %s, want change events", m.raw)
		}
		if m.ID == c.sentinel && m.Action == "update" && m.Record["name"] == mark {
			return got
		}
		got = append(got, m)
	}
	rt.Fatalf("no sentinel %s after 1000 messages", mark)
	return nil
}

// call makes an API step's request to this instance as its user.
func (inst *instance) call(rt *rapid.T, i int, a *apiCall) {
	var body io.Reader
	if a.body != nil {
		b, _ := json.Marshal(a.body)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(a.method, inst.http+a.path, body)
	if err != nil {
		rt.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.as.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rt.Fatalf("step %d %s %s: %v", i, a.method, a.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != a.status {
		rt.Fatalf("step %d %s %s %v = %d %s, want %d", i, a.method, a.path, a.body, resp.StatusCode, raw, a.status)
	}
}

// markerOf is the field of an event's record that the model set.
var markerField = map[string]string{"stores": "name", "products": "name", "whitelist_systems": "name", "whitelist_users": "robloxUsername", "sales": "amountCents"}

func eventKey(m message) string {
	table := m.Topic
	if m.Topic == "whitelist" {
		table = map[string]string{"system": "whitelist_systems", "user": "whitelist_users"}[m.Kind]
	}
	marker := ""
	if v, ok := m.Record[markerField[table]]; ok {
		marker = fmt.Sprint(v)
	}
	return m.Topic + " " + m.Action + " " + m.ID + " " + marker
}

// TestProperty17_RealtimeBroadcasting claims: for generated sequences of
// changes (stores, products turning active and inactive, sales with and
// without a buyer, whitelist systems and players; inserts, updates and
// deletes, cascades included) owned by three users, each made either by
// its owner through the HTTP API of one of two server instances sharing
// one database or as a statement through an instance's pool, and for
// generated subscribers (any user, either instance, one to three
// subscriptions with any topic and filter), over real WebSockets: every
// subscriber allowed to see a change and subscribed to it receives it,
// exactly once, in commit order per row, as the change left the row; no
// other subscriber receives it. Who may see what comes from the model
// above, not from the code under test. Bounded waits: a sentinel change
// after the last one marks the end of delivery. rapid's default 100
// iterations (under 10 s here), one cluster shared by all, each iteration
// with its own rows and connections.
func TestProperty17_RealtimeBroadcasting(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	insts := []*instance{cl.start(realtime.Config{}), cl.start(realtime.Config{})}
	users := []user{insts[0].newUser("alice"), insts[1].newUser("bob"), insts[0].newUser("carol")}
	iteration, delivered, changes, subscribers, apiCalls := 0, 0, 0, 0, 0
	defer func() {
		t.Logf("%d iterations: %d changes (%d steps through the HTTP API), %d subscribers, %d events delivered as the model expected", iteration, changes, apiCalls, subscribers, delivered)
	}()
	rapid.Check(t, func(rt *rapid.T) {
		iteration++
		w := &world{users: users, stores: map[string]*mStore{}, products: map[string]*mProduct{}, sales: map[string]*mSale{},
			systems: map[string]*mSystem{}, players: map[string]*mPlayer{}, sold: map[string]bool{}, ids: map[string][]string{}}
		for i := range rapid.IntRange(5, 60).Draw(rt, "steps") {
			w.drawStep(rt, i)
		}

		// Subscribers, each with a sentinel store of its own user.
		var clients []*wsClient
		defer func() {
			for _, c := range clients {
				c.conn.Close()
			}
		}()
		for i := range rapid.IntRange(2, 6).Draw(rt, "subscribers") {
			label := fmt.Sprintf("subscriber %d ", i)
			c := &wsClient{user: rapid.SampledFrom(users).Draw(rt, label+"user"), instance: rapid.IntRange(0, 1).Draw(rt, label+"instance")}
			inst := insts[c.instance]
			conn, resp, err := websocket.DefaultDialer.Dial(inst.ws+"?access_token="+url.QueryEscape(c.user.token), nil)
			if err != nil {
				rt.Fatalf("Dial err = %v", err)
			}
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			c.conn = conn
			clients = append(clients, c)
			if m := c.read(rt); m.Type != "authenticated" {
				rt.Fatalf("first message %s, want authenticated", m.raw)
			}
			c.sentinel = uuid.NewString()
			inst.exec(`INSERT INTO stores (id, owner_id, name, slug) VALUES ($1, $2, 'sentinel', $3)`, c.sentinel, c.user.id, "p17-"+c.sentinel)
			seen := map[string]bool{}
			for j := range rapid.IntRange(1, 3).Draw(rt, label+"subscriptions") {
				s := sub{topic: rapid.SampledFrom([]string{"products", "sales", "stores", "whitelist"}).Draw(rt, fmt.Sprintf("%ssub %d topic", label, j))}
				for _, k := range filterKeys[s.topic] {
					if rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("%ssub %d filter %s", label, j, k)) == 0 {
						if s.filter == nil {
							s.filter = map[string]string{}
						}
						s.filter[k] = rapid.SampledFrom(w.filterValues(s.topic, k)).Draw(rt, fmt.Sprintf("%ssub %d %s", label, j, k))
					}
				}
				b, _ := json.Marshal(s.filter)
				if seen[s.topic+string(b)] {
					continue
				}
				seen[s.topic+string(b)] = true
				c.subs = append(c.subs, s)
			}
			for _, s := range append(c.subs, sub{topic: "stores", filter: map[string]string{"id": c.sentinel}}) {
				msg := map[string]any{"type": "subscribe", "topic": s.topic}
				if s.filter != nil {
					msg["filter"] = s.filter
				}
				c.send(rt, msg)
				for {
					m := c.read(rt)
					if m.Type == "change" {
						continue // the sentinel's insert, or another's
					}
					if m.Type != "subscribed" || m.Topic != s.topic {
						rt.Fatalf("subscribe %s %v: got %s", s.topic, s.filter, m.raw)
					}
					break
				}
			}
		}
		// Start: once a client sees its sentinel's "start", every change
		// committed before has been dispatched to it.
		start, end := fmt.Sprintf("start-%d", iteration), fmt.Sprintf("end-%d", iteration)
		sentinels := make([]string, len(clients))
		for i, c := range clients {
			sentinels[i] = c.sentinel
		}
		insts[0].exec(`UPDATE stores SET name = $2 WHERE id = ANY ($1::uuid[])`, sentinels, start)
		for _, c := range clients {
			c.until(rt, start)
		}

		ctx := context.Background()
		for i, st := range w.steps {
			changes += len(st.changes)
			if st.api != nil {
				apiCalls++
				insts[st.instance].call(rt, i, st.api)
				continue
			}
			if _, err := insts[st.instance].db.Pool.Exec(ctx, st.sql, st.args...); err != nil {
				rt.Fatalf("step %d %q %v: %v", i, st.sql, st.args, err)
			}
		}
		insts[1].exec(`UPDATE stores SET name = $2 WHERE id = ANY ($1::uuid[])`, sentinels, end)

		isSentinel := map[string]bool{}
		for _, s := range sentinels {
			isSentinel[s] = true
		}
		for ci, c := range clients {
			want := map[string][]string{}
			for _, st := range w.steps {
				for _, ch := range st.changes {
					if !ch.visibleTo(c.user.id) {
						continue
					}
					for _, s := range c.subs {
						if s.matches(ch) {
							want[ch.id] = append(want[ch.id], ch.seenBy(c.user.id))
							break
						}
					}
				}
			}
			got := map[string][]string{}
			for _, m := range c.until(rt, end) {
				if isSentinel[m.ID] {
					continue
				}
				got[m.ID] = append(got[m.ID], eventKey(m))
			}
			subscribers++
			for _, evs := range want {
				delivered += len(evs)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				var subs []string
				for _, s := range c.subs {
					subs = append(subs, fmt.Sprintf("%s%v", s.topic, s.filter))
				}
				rt.Fatalf("subscriber %d (%s on instance %d, %s): events per row (-want +got):\n%s", ci, c.user.email, c.instance, strings.Join(subs, " "), diff)
			}
		}
	})
}
