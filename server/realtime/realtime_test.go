package realtime_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"

	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/realtime"
)

// A change made through SQL reaches a subscribed client as insert, update
// and delete events, with the record under camelCase names.
func TestChangeReachesSubscriber(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice := inst.newUser("alice")
	store := inst.newStore(alice)
	c := inst.connect(alice)
	c.subscribe("products", map[string]string{"storeId": store})
	inst.barrier(c, alice)

	id := inst.newProduct(store, false)
	m := c.nextChange()
	if m.Topic != "products" || m.Action != "insert" || m.ID != id {
		t.Fatalf("event = %s, want products insert %s", m.raw, id)
	}
	for k, want := range map[string]any{"id": id, "storeId": store, "name": "Sword", "priceCents": 499.0, "isActive": false, "currency": "usd"} {
		if m.Record[k] != want {
			t.Errorf("record[%s] = %v, want %v (event %s)", k, m.Record[k], want, m.raw)
		}
	}
	if _, ok := m.Record["createdAt"]; !ok {
		t.Errorf("record has no createdAt: %s", m.raw)
	}

	inst.exec(`UPDATE products SET price_cents = 999 WHERE id = $1`, id)
	if m := c.nextChange(); m.Action != "update" || m.Record["priceCents"] != 999.0 {
		t.Fatalf("event = %s, want update with priceCents 999", m.raw)
	}
	inst.exec(`DELETE FROM products WHERE id = $1`, id)
	if m := c.nextChange(); m.Action != "delete" || m.ID != id || m.Record["storeId"] != store {
		t.Fatalf("event = %s, want delete of %s with its storeId", m.raw, id)
	}
}

// With two server instances on one database, a change written through
// instance A reaches a client connected to instance B, and the other way
// round.
func TestChangeCrossesInstances(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	a := cl.start(realtime.Config{})
	b := cl.start(realtime.Config{})
	alice := a.newUser("alice")
	store := a.newStore(alice)

	onB := b.connect(alice) // alice's token from A is good on B: same signing keys
	onB.subscribe("products", nil)
	onA := a.connect(alice)
	onA.subscribe("products", nil)
	b.barrier(onB, alice)
	a.barrier(onA, alice)

	id := a.newProduct(store, true)
	for name, c := range map[string]*client{"B": onB, "A": onA} {
		if m := c.nextChange(); m.ID != id || m.Action != "insert" {
			t.Fatalf("client on %s got %s, want insert of %s written through A", name, m.raw, id)
		}
	}
	b.exec(`UPDATE products SET name = 'Axe' WHERE id = $1`, id)
	if m := onA.nextChange(); m.ID != id || m.Action != "update" || m.Record["name"] != "Axe" {
		t.Fatalf("client on A got %s, want update of %s written through B", m.raw, id)
	}
}

// Filters select changes: a subscription filtered by store, product or
// system receives only matching changes (the next event after the
// non-matching changes is the matching one).
func TestFilters(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice := inst.newUser("alice")
	s1, s2 := inst.newStore(alice), inst.newStore(alice)
	p1, p2 := inst.newProduct(s1, true), inst.newProduct(s2, true)
	sys1, sys2 := uuid.NewString(), uuid.NewString()
	inst.exec(`INSERT INTO whitelist_systems (id, owner_id, store_id, name) VALUES ($1, $3, $4, 'one'), ($2, $3, NULL, 'two')`, sys1, sys2, alice.id, s1)

	c := inst.connect(alice)
	c.subscribe("products", map[string]string{"storeId": s1})
	c.subscribe("sales", map[string]string{"productId": p1})
	c.subscribe("whitelist", map[string]string{"systemId": sys1})
	c.subscribe("stores", map[string]string{"id": s1})
	inst.barrier(c, alice)

	// Non-matching first, then a matching one of each topic.
	inst.exec(`UPDATE products SET name = 'x' WHERE id = $1`, p2)
	inst.exec(`UPDATE products SET name = 'y' WHERE id = $1`, p1)
	if m := c.nextChange(); m.Topic != "products" || m.ID != p1 {
		t.Fatalf("got %s, want only the update of %s (store filter)", m.raw, p1)
	}
	inst.exec(`INSERT INTO sales (product_id, store_id, amount_cents) VALUES ($1, $2, 100)`, p2, s2)
	sale := uuid.NewString()
	inst.exec(`INSERT INTO sales (id, product_id, store_id, amount_cents) VALUES ($1, $2, $3, 100)`, sale, p1, s1)
	if m := c.nextChange(); m.Topic != "sales" || m.ID != sale || m.Record["productId"] != p1 {
		t.Fatalf("got %s, want only sale %s (product filter)", m.raw, sale)
	}
	inst.exec(`INSERT INTO whitelist_users (system_id, roblox_user_id, license_key, license_key_bidx) VALUES ($1, 1, $2, $3)`,
		sys2, inst.seal("whitelist_users", "license_key", uuid.NewString(), "k"), make([]byte, 32))
	wu := uuid.NewString()
	inst.exec(`INSERT INTO whitelist_users (id, system_id, roblox_user_id, license_key, license_key_bidx) VALUES ($1, $2, 2, $3, $4)`,
		wu, sys1, inst.seal("whitelist_users", "license_key", wu, "k"), make([]byte, 32))
	if m := c.nextChange(); m.Topic != "whitelist" || m.Kind != "user" || m.ID != wu || m.Record["systemId"] != sys1 {
		t.Fatalf("got %s, want only whitelisted player %s (system filter)", m.raw, wu)
	}
	inst.exec(`UPDATE stores SET name = 'b' WHERE id = $1`, s2)
	inst.exec(`UPDATE stores SET name = 'a' WHERE id = $1`, s1)
	if m := c.nextChange(); m.Topic != "stores" || m.ID != s1 || m.Record["name"] != "a" {
		t.Fatalf("got %s, want only store %s (id filter)", m.raw, s1)
	}
}

// A user does not receive another user's private changes (their stores,
// inactive products, sales, whitelists), only public ones (active
// products); the owner receives them all.
func TestNoOtherUsersPrivateChanges(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice, bob := inst.newUser("alice"), inst.newUser("bob")
	aliceStore := inst.newStore(alice)

	snoop := inst.connect(bob)
	owner := inst.connect(alice)
	for _, topic := range []string{"products", "sales", "stores", "whitelist"} {
		snoop.subscribe(topic, nil)
		owner.subscribe(topic, nil)
	}
	// Filtering by someone else's store does not open it up either.
	snoop.subscribe("sales", map[string]string{"storeId": aliceStore})
	inst.barrier(snoop, bob)
	inst.barrier(owner, alice)

	// Alice's private changes.
	inst.exec(`UPDATE stores SET name = 'renamed' WHERE id = $1`, aliceStore)
	hidden := inst.newProduct(aliceStore, false)
	inst.exec(`INSERT INTO sales (product_id, store_id, amount_cents) VALUES ($1, $2, 100)`, hidden, aliceStore)
	sys := uuid.NewString()
	inst.exec(`INSERT INTO whitelist_systems (id, owner_id, name) VALUES ($1, $2, 'wl')`, sys, alice.id)
	// Then a public one: the next event bob sees must be it.
	public := inst.newProduct(aliceStore, true)
	if m := snoop.nextChange(); m.ID != public || m.Action != "insert" {
		t.Fatalf("bob got %s, want only the public product %s", m.raw, public)
	}
	// Alice saw everything, in commit order.
	want := []string{"stores", "products", "sales", "whitelist", "products"}
	for i, topic := range want {
		if m := owner.nextChange(); m.Topic != topic {
			t.Fatalf("alice's event %d = %s, want topic %s", i, m.raw, topic)
		}
	}
	// Deactivating the public product is announced publicly once, so
	// listings drop it, as the id and a removed marker only: never the new
	// field values (here a private rename in the same update). The owner
	// gets the whole record. Later changes of it are private again.
	inst.exec(`UPDATE products SET is_active = false, name = 'private new name' WHERE id = $1`, public)
	if m := snoop.nextChange(); m.ID != public || m.Action != "removed" || m.Record != nil ||
		strings.Contains(string(m.raw), "private new name") || !strings.Contains(string(m.raw), `"removed":true`) {
		t.Fatalf("bob got %s, want only {action:removed, id:%s, removed:true} with no record", m.raw, public)
	}
	if m := owner.nextChange(); m.ID != public || m.Action != "update" || m.Record["name"] != "private new name" || m.Record["isActive"] != false {
		t.Fatalf("alice got %s, want the full update of her product", m.raw)
	}
	inst.exec(`UPDATE products SET name = 'secret plan' WHERE id = $1`, public)
	other := inst.newProduct(inst.newStore(bob), false) // bob's own: visible to bob
	for {
		m := snoop.nextChange()
		if m.ID == public {
			t.Fatalf("bob got %s, a change of alice's inactive product", m.raw)
		}
		if m.ID == other {
			break
		}
	}
	// A sale of alice's product to bob is bob's purchase: he sees it.
	bought := uuid.NewString()
	inst.exec(`INSERT INTO sales (id, product_id, store_id, buyer_id, amount_cents) VALUES ($1, $2, $3, $4, 100)`, bought, hidden, aliceStore, bob.id)
	if m := snoop.nextChange(); m.Topic != "sales" || m.ID != bought || m.Record["buyerId"] != bob.id {
		t.Fatalf("bob got %s, want his purchase %s", m.raw, bought)
	}
}

// Sensitive fields (download URLs, Stripe ids, license keys and their blind
// index, hardware ids) never appear in events, neither as plaintext, as
// ciphertext, nor as field names.
func TestSensitiveFieldsNeverInEvents(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice := inst.newUser("alice")
	c := inst.connect(alice)
	for _, topic := range []string{"products", "sales", "stores", "whitelist"} {
		c.subscribe(topic, nil)
	}
	inst.barrier(c, alice)
	secrets := map[string]string{
		"stores.stripe_account_id":       "acct_SECRETSTRIPEACCOUNT",
		"products.download_url":          "https://files.example/SECRETDOWNLOAD",
		"sales.stripe_payment_intent_id": "pi_SECRETPAYMENTINTENT",
		"whitelist_users.license_key":    "LICENSE-SECRET-KEY-0001",
		"whitelist_users.hwid":           "HWID-SECRET-MACHINE",
	}
	var stored [][]byte
	seal := func(tc, id string) []byte {
		table, column, _ := strings.Cut(tc, ".")
		ct := inst.seal(table, column, id, secrets[tc])
		stored = append(stored, ct)
		return ct
	}
	store, product, sale, sys, wu := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	inst.exec(`INSERT INTO stores (id, owner_id, name, slug, stripe_account_id) VALUES ($1, $2, 'S', $3, $4)`,
		store, alice.id, "s-"+store, seal("stores.stripe_account_id", store))
	inst.exec(`INSERT INTO products (id, store_id, name, price_cents, download_url) VALUES ($1, $2, 'P', 1, $3)`,
		product, store, seal("products.download_url", product))
	inst.exec(`INSERT INTO sales (id, product_id, store_id, amount_cents, stripe_payment_intent_id) VALUES ($1, $2, $3, 1, $4)`,
		sale, product, store, seal("sales.stripe_payment_intent_id", sale))
	inst.exec(`INSERT INTO whitelist_systems (id, owner_id, store_id, name) VALUES ($1, $2, $3, 'W')`, sys, alice.id, store)
	bidx, err := inst.kr.BlindIndex("whitelist_users", "license_key", []byte(secrets["whitelist_users.license_key"]))
	if err != nil {
		t.Fatal(err)
	}
	stored = append(stored, bidx)
	inst.exec(`INSERT INTO whitelist_users (id, system_id, roblox_user_id, license_key, license_key_bidx, hwid) VALUES ($1, $2, 7, $3, $4, $5)`,
		wu, sys, seal("whitelist_users.license_key", wu), bidx, seal("whitelist_users.hwid", wu))
	// Updates and deletes too.
	inst.exec(`UPDATE whitelist_users SET roblox_username = 'player' WHERE id = $1`, wu)
	inst.exec(`UPDATE stores SET stripe_onboarded = true WHERE id = $1`, store)
	inst.exec(`DELETE FROM whitelist_users WHERE id = $1`, wu)
	inst.exec(`DELETE FROM sales WHERE id = $1`, sale)

	// Insert and update events of rows deleted before the hub loaded them
	// are skipped, so read up to the last change rather than count.
	var events []string
	for {
		m := c.nextChange()
		events = append(events, string(m.raw))
		if m.ID == sale && m.Action == "delete" {
			break
		}
	}
	all := strings.Join(events, "\n")
	forbidden := []string{"downloadUrl", "download_url", "stripeAccountId", "stripe_account_id", "stripePaymentIntentId",
		"licenseKey", "license_key", "LicenseKeyBidx", "hwid", "Hwid"}
	for _, v := range secrets {
		forbidden = append(forbidden, v)
	}
	for _, ct := range stored {
		forbidden = append(forbidden, base64.StdEncoding.EncodeToString(ct), hex.EncodeToString(ct))
	}
	for _, f := range forbidden {
		if strings.Contains(strings.ToLower(all), strings.ToLower(f)) {
			t.Errorf("events contain %q:\n%s", f, all)
		}
	}
	logs := inst.logs.String()
	metrics, _ := inst.reg.Gather()
	for _, f := range append([]string{alice.token}, forbidden...) {
		if strings.Contains(logs, f) {
			t.Errorf("logs contain %q", f)
		}
		for _, mf := range metrics {
			if strings.Contains(mf.String(), f) {
				t.Errorf("metric %s contains %q", mf.GetName(), f)
			}
		}
	}
}

// Connections without a valid token are closed with an UNAUTHORIZED error:
// a bad access_token query, a first message that is not auth, a bad token
// in the auth message, and silence past the auth timeout. A good auth
// message works.
func TestUnauthenticatedIsClosed(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{AuthTimeout: 300 * time.Millisecond})
	alice := inst.newUser("alice")
	tampered := alice.token[:len(alice.token)-4] + "AAAA"
	cases := map[string]struct {
		query string
		send  []string
	}{
		"bad query token":     {query: "access_token=" + tampered},
		"garbage query token": {query: "access_token=nope"},
		"subscribe first":     {send: []string{`{"type":"subscribe","topic":"products"}`}},
		"malformed first":     {send: []string{`{"type":`}},
		"bad auth message":    {send: []string{`{"type":"auth","token":"` + tampered + `"}`}},
		"empty auth token":    {send: []string{`{"type":"auth","token":""}`}},
		"silence":             {},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := inst.dial(tc.query)
			c.t = t
			for _, s := range tc.send {
				c.send(s)
			}
			msgs, code := c.expectClosed()
			if code != 4401 {
				t.Errorf("close code = %d, want 4401", code)
			}
			if len(msgs) != 1 || msgs[0].Type != "error" || msgs[0].Error != "UNAUTHORIZED" || msgs[0].Message == "" {
				t.Fatalf("messages before close = %v, want one UNAUTHORIZED error", msgs)
			}
			if strings.Contains(string(msgs[0].raw), tampered) {
				t.Errorf("error echoes the token: %s", msgs[0].raw)
			}
		})
	}
	t.Run("auth message", func(t *testing.T) {
		t.Parallel()
		c := inst.dial("")
		c.t = t
		c.send(map[string]string{"type": "auth", "token": alice.token})
		if m := c.read(); m.Type != "authenticated" || m.UserID != alice.id {
			t.Fatalf("got %s, want authenticated", m.raw)
		}
		c.subscribe("stores", nil)
	})
	t.Run("plain GET", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Get("http" + strings.TrimPrefix(inst.ws, "ws"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("GET without upgrade = %d, want 400", resp.StatusCode)
		}
	})
}

// Malformed messages from an authenticated client get BAD_REQUEST errors
// with a message, and the connection stays usable.
func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{MaxSubscriptions: 2})
	alice := inst.newUser("alice")
	c := inst.connect(alice)
	bad := []string{
		`nonsense`,
		`{"type":"subscribe"}`,
		`{"type":"subscribe","topic":"users"}`,
		`{"type":"subscribe","topic":"products","filter":{"ownerId":"` + uuid.NewString() + `"}}`,
		`{"type":"subscribe","topic":"products","filter":{"storeId":"not-a-uuid"}}`,
		`{"type":"subscribe","topic":"products","filter":{"storeId":5}}`,
		`{"type":"subscribe","topic":"products","extra":1}`,
		`{"type":"fly"}`,
		`{}`,
		`[]`,
		`{"type":"ping"}{"type":"ping"}`,
		`{"type":"unsubscribe"}`,
	}
	for _, b := range bad {
		c.send(b)
		m := c.read()
		if m.Type != "error" || m.Error != "BAD_REQUEST" || m.Message == "" {
			t.Errorf("%s: got %s, want a BAD_REQUEST error", b, m.raw)
		}
	}
	if err := c.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if m := c.read(); m.Error != "BAD_REQUEST" {
		t.Errorf("binary frame: got %s, want BAD_REQUEST", m.raw)
	}
	c.send(`{"type":"ping"}`)
	if m := c.read(); m.Type != "pong" {
		t.Fatalf("ping after errors: got %s, want pong", m.raw)
	}

	// The subscription cap, unsubscribe by id and by topic.
	s1 := c.subscribe("products", nil)
	if again := c.subscribe("products", nil); again != s1 {
		t.Errorf("subscribing twice gave %s and %s, want the same subscription", s1, again)
	}
	c.subscribe("sales", nil)
	c.send(`{"type":"subscribe","topic":"stores"}`)
	if m := c.read(); m.Error != "BAD_REQUEST" || !strings.Contains(m.Message, "at most 2") {
		t.Fatalf("third subscription: got %s, want the cap's BAD_REQUEST", m.raw)
	}
	c.send(map[string]string{"type": "unsubscribe", "subscription": s1})
	if m := c.read(); m.Type != "unsubscribed" || m.Subscription != s1 {
		t.Fatalf("unsubscribe: got %s", m.raw)
	}
	c.send(`{"type":"unsubscribe","topic":"sales"}`)
	if m := c.read(); m.Type != "unsubscribed" || m.Topic != "sales" {
		t.Fatalf("unsubscribe by topic: got %s", m.raw)
	}
	c.send(map[string]string{"type": "unsubscribe", "subscription": s1})
	if m := c.read(); m.Error != "NOT_FOUND" {
		t.Fatalf("unsubscribe twice: got %s, want NOT_FOUND", m.raw)
	}
	// Unsubscribed: a change is no longer delivered; the next message is
	// the answer to a ping.
	inst.newProduct(inst.newStore(alice), true)
	c.send(`{"type":"ping"}`)
	if m := c.read(); m.Type != "pong" {
		t.Fatalf("after unsubscribing got %s, want pong", m.raw)
	}

	// A message over the size limit closes the connection.
	c.send(`{"type":"ping","pad":"` + strings.Repeat("x", 9000) + `"}`)
	if _, code := c.expectClosed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code = %d, want %d", code, websocket.CloseMessageTooBig)
	}
}

// Logging out ends the feed: the token is verified again periodically.
func TestLogoutEndsFeed(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{RecheckInterval: 100 * time.Millisecond})
	alice := inst.newUser("alice")
	c := inst.connect(alice)
	c.subscribe("stores", nil)
	if err := inst.auth.Logout(context.Background(), alice.id, "", true, auth.RequestMeta{IP: "192.0.2.1"}); err != nil {
		t.Fatalf("Logout err = %v, want nil", err)
	}
	msgs, code := c.expectClosed()
	if code != 4401 || len(msgs) != 1 || msgs[0].Error != "UNAUTHORIZED" {
		t.Fatalf("after logout: messages %v, close code %d; want UNAUTHORIZED and 4401", msgs, code)
	}
}

// When the LISTEN connection drops, the hub reconnects, tells its clients
// to resync, and changes flow again. The gauge counts open sockets.
func TestListenerReconnectsAndGauge(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice := inst.newUser("alice")
	store := inst.newStore(alice)
	gauge := func() float64 { return inst.metric("vectabase_realtime_connections") }
	c := inst.connect(alice)
	c2 := inst.connect(alice)
	if g := gauge(); g != 2 {
		t.Errorf("vectabase_realtime_connections = %v, want 2", g)
	}
	c2.conn.Close()
	waitFor(t, "the gauge to drop to 1", func() bool { return gauge() == 1 })
	c.subscribe("products", nil)
	inst.barrier(c, alice)

	var n int
	err := inst.db.Pool.QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminating the LISTEN backend: n = %d, err = %v; want 1 terminated", n, err)
	}
	if m := c.read(); m.Type != "resync" {
		t.Fatalf("after the listener dropped got %s, want resync", m.raw)
	}
	id := inst.newProduct(store, true)
	if m := c.nextChange(); m.ID != id {
		t.Fatalf("after reconnect got %s, want insert of %s", m.raw, id)
	}
	if v := inst.metric("vectabase_realtime_listener_reconnects_total"); v != 1 {
		t.Errorf("reconnects = %v, want 1", v)
	}
}

// Deleting a store or a whitelist system deletes its products or players
// by cascade; the owner still receives those deletes (the parent row is
// gone when the child's trigger runs), and an active product's delete is
// public.
func TestCascadedDeletesReachOwner(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice, bob := inst.newUser("alice"), inst.newUser("bob")
	store := inst.newStore(alice)
	active, inactive := inst.newProduct(store, true), inst.newProduct(store, false)
	sys, wu := uuid.NewString(), uuid.NewString()
	inst.exec(`INSERT INTO whitelist_systems (id, owner_id, store_id, name) VALUES ($1, $2, $3, 'wl')`, sys, alice.id, store)
	inst.exec(`INSERT INTO whitelist_users (id, system_id, roblox_user_id, license_key, license_key_bidx) VALUES ($1, $2, 2, $3, $4)`,
		wu, sys, inst.seal("whitelist_users", "license_key", wu, "k"), make([]byte, 32))

	owner := inst.connect(alice)
	owner.subscribe("products", map[string]string{"storeId": store})
	owner.subscribe("whitelist", map[string]string{"storeId": store})
	public := inst.connect(bob)
	public.subscribe("products", nil)
	inst.barrier(owner, alice)
	inst.barrier(public, bob)

	inst.exec(`DELETE FROM whitelist_systems WHERE id = $1`, sys)
	got := map[string]string{}
	for range 2 {
		m := owner.nextChange()
		got[m.ID] = m.Kind + " " + m.Action
	}
	if got[sys] != "system delete" || got[wu] != "user delete" {
		t.Fatalf("after deleting the system alice got %v, want the system's and its player's deletes", got)
	}
	inst.exec(`DELETE FROM stores WHERE id = $1`, store)
	got = map[string]string{}
	for range 2 {
		m := owner.nextChange()
		got[m.ID] = m.Action
	}
	if got[active] != "delete" || got[inactive] != "delete" {
		t.Fatalf("after deleting the store alice got %v, want both products' deletes", got)
	}
	if m := public.nextChange(); m.ID != active || m.Action != "delete" {
		t.Fatalf("bob got %s, want the delete of the public product %s only", m.raw, active)
	}
	// The setting that carried the parents' keys ended with the transaction.
	var v *string
	if err := inst.db.Pool.QueryRow(context.Background(), `SELECT nullif(current_setting('vectabase.realtime_deleted_parents', true), '')`).Scan(&v); err != nil || v != nil {
		t.Fatalf("deleted-parents setting after commit = %v, %v; want empty", v, err)
	}
}

// Past REALTIME_MAX_CONNECTIONS an upgrade is refused with 503 in the
// contract's error body; a freed slot can be used again.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{MaxConnections: 1})
	alice := inst.newUser("alice")
	first := inst.connect(alice)
	_, resp, err := websocket.DefaultDialer.Dial(inst.ws, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection: err = %v, response %v; want 503", err, resp)
	}
	resp.Body.Close()
	first.conn.Close()
	waitFor(t, "the first connection to be gone", func() bool { return inst.hub.Connections() == 0 })
	inst.connect(alice)
}

// Changes made through the marketplace API reach subscribers like any other
// write, without the product's download URL.
func TestChangeThroughMarketplaceAPI(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice, bob := inst.newUser("alice"), inst.newUser("bob")
	owner := inst.connect(alice)
	owner.subscribe("stores", nil)
	owner.subscribe("products", nil)
	public := inst.connect(bob)
	public.subscribe("products", nil)
	inst.barrier(owner, alice)
	inst.barrier(public, bob)

	var st struct{ ID string }
	if code := inst.api(alice, "POST", "/api/stores", map[string]any{"name": "Shop", "slug": "shop-" + uuid.NewString()[:8]}, &st); code != 201 {
		t.Fatalf("POST /api/stores = %d, want 201", code)
	}
	if m := owner.nextChange(); m.Topic != "stores" || m.Action != "insert" || m.ID != st.ID {
		t.Fatalf("alice got %s, want the insert of store %s", m.raw, st.ID)
	}
	const secretURL = "https://files.example/SECRET-DOWNLOAD-LINK"
	var p struct{ ID string }
	if code := inst.api(alice, "POST", "/api/products", map[string]any{"storeId": st.ID, "name": "Sword", "priceCents": 500, "downloadUrl": secretURL}, &p); code != 201 {
		t.Fatalf("POST /api/products = %d, want 201", code)
	}
	for name, c := range map[string]*client{"alice": owner, "bob": public} {
		m := c.nextChange()
		if m.Topic != "products" || m.Action != "insert" || m.ID != p.ID || m.Record["priceCents"] != 500.0 {
			t.Fatalf("%s got %s, want the insert of product %s", name, m.raw, p.ID)
		}
		if strings.Contains(string(m.raw), "SECRET-DOWNLOAD") || strings.Contains(string(m.raw), "downloadUrl") {
			t.Fatalf("%s's event carries the download URL: %s", name, m.raw)
		}
	}
	if code := inst.api(alice, "DELETE", "/api/products/"+p.ID, nil, nil); code != 204 {
		t.Fatalf("DELETE /api/products/%s = %d, want 204", p.ID, code)
	}
	if m := public.nextChange(); m.Action != "delete" || m.ID != p.ID {
		t.Fatalf("bob got %s, want the delete of %s", m.raw, p.ID)
	}
}

// The server pings; a client that answers (any WebSocket library does while
// it reads) stays connected, one that stops answering is dropped after two
// ping intervals.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{PingInterval: 100 * time.Millisecond})
	alice := inst.newUser("alice")
	live := inst.connect(alice)
	silent := inst.connect(alice)
	// live keeps reading, so its library answers the pings.
	lost := make(chan error, 1)
	go func() {
		_ = live.conn.SetReadDeadline(time.Now().Add(time.Minute))
		for {
			if _, _, err := live.conn.ReadMessage(); err != nil {
				lost <- err
				return
			}
		}
	}()
	// silent never reads, so never answers: the server drops it.
	waitFor(t, "the silent client to be dropped", func() bool { return inst.hub.Connections() == 1 })
	time.Sleep(time.Second) // ten more intervals
	select {
	case err := <-lost:
		t.Fatalf("the client that answers pings lost its connection: %v", err)
	default:
	}
	if n := inst.hub.Connections(); n != 1 {
		t.Fatalf("connections = %d, want 1 (the live client)", n)
	}
	_ = silent
}

// Each event shows the row as its change left it, even when the next change
// commits before the first is delivered; a delete carries the row's last
// state. A row too large for NOTIFY's 8000 bytes still reaches clients,
// loaded by id.
func TestEventsCarryTheRowAsChanged(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice := inst.newUser("alice")
	store := inst.newStore(alice)
	c := inst.connect(alice)
	c.subscribe("products", nil)
	inst.barrier(c, alice)

	id := uuid.NewString()
	inst.exec(`INSERT INTO products (id, store_id, name, price_cents) VALUES ($1, $2, 'v1', 100)`, id, store)
	inst.exec(`UPDATE products SET name = 'v2', price_cents = 200 WHERE id = $1`, id)
	inst.exec(`DELETE FROM products WHERE id = $1`, id)
	for _, want := range []struct {
		action, name string
		price        float64
	}{{"insert", "v1", 100}, {"update", "v2", 200}, {"delete", "v2", 200}} {
		m := c.nextChange()
		if m.Action != want.action || m.Record["name"] != want.name || m.Record["priceCents"] != want.price {
			t.Fatalf("got %s, want %s with name %s and priceCents %v", m.raw, want.action, want.name, want.price)
		}
	}

	big := strings.Repeat("long description ", 1000) // ~17 KB
	large := uuid.NewString()
	inst.exec(`INSERT INTO products (id, store_id, name, description, price_cents) VALUES ($1, $2, 'big', $3, 1)`, large, store, big)
	if m := c.nextChange(); m.ID != large || m.Action != "insert" || m.Record["description"] != big {
		t.Fatalf("large row: got %.200s…, want its insert with the whole description", m.raw)
	}
	inst.exec(`DELETE FROM products WHERE id = $1`, large)
	if m := c.nextChange(); m.ID != large || m.Action != "delete" || m.Record["storeId"] != store {
		t.Fatalf("large row delete: got %.200s…, want its id and storeId", m.raw)
	}
}

// A product's metadata reaches clients as stored, nulls included.
func TestMetadataKeepsItsNulls(t *testing.T) {
	t.Parallel()
	inst := newCluster(t).start(realtime.Config{})
	alice := inst.newUser("alice")
	store := inst.newStore(alice)
	c := inst.connect(alice)
	c.subscribe("products", nil)
	inst.barrier(c, alice)
	id := uuid.NewString()
	inst.exec(`INSERT INTO products (id, store_id, name, price_cents, metadata) VALUES ($1, $2, 'm', 1, '{"a": null, "b": [1, null]}')`, id, store)
	m := c.nextChange()
	md, ok := m.Record["metadata"].(map[string]any)
	if m.ID != id || !ok {
		t.Fatalf("got %s, want the insert of %s with its metadata", m.raw, id)
	}
	if v, present := md["a"]; !present || v != nil {
		t.Fatalf("metadata = %v, want a: null kept", md)
	}
	if m.Record["description"] != nil || m.Record["robloxAssetId"] != nil {
		t.Fatalf("got %s, want null description and robloxAssetId", m.raw)
	}
}
