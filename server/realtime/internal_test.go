package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/vectabase/vectabase/store"
	"pgregory.net/rapid"
)

func testHub(t testing.TB, cfg Config) *Hub {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &Hub{cfg: cfg.withDefaults(), log: zerolog.Nop(), m: m, clients: map[*client]struct{}{}, ctx: ctx, cancel: cancel}
}

func subscribedClient(h *Hub, userID string, subs ...subscription) *client {
	c := newClient(h)
	c.userID = userID
	c.subs = subs
	h.add(c)
	return c
}

// A client that stops reading is disconnected once its buffer is full; the
// hub never waits for it, and other clients keep receiving.
func TestSlowClientIsDisconnectedNotWaitedFor(t *testing.T) {
	t.Parallel()
	h := testHub(t, Config{SendBuffer: 4})
	owner := uuid.NewString()
	slow := subscribedClient(h, owner, subscription{id: "s1", topic: TopicStores})
	fast := subscribedClient(h, owner, subscription{id: "s1", topic: TopicStores})
	n := notification{Topic: TopicStores, Table: "stores", Action: "delete", ID: uuid.NewString(), OwnerID: owner}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			h.dispatch(context.Background(), []notification{n})
			<-fast.send // fast reads everything
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // a deadlock detector, not a speed test
		t.Fatal("dispatch blocked on a slow client")
	}
	select {
	case <-slow.done:
	default:
		t.Fatal("slow client is still connected, want it disconnected")
	}
	if slow.closeCode != closeSlow {
		t.Errorf("slow client close code = %d, want %d", slow.closeCode, closeSlow)
	}
	select {
	case <-fast.done:
		t.Fatal("fast client was disconnected")
	default:
	}
}

// TestProperty_OnlyPermittedUsersReceiveChanges claims that a change reaches
// a connection only if its user owns the changed row (or its store or
// system), bought it (sales, licenses), or it is a public active product; and that an
// unfiltered subscription to the topic receives every change so permitted.
func TestProperty_OnlyPermittedUsersReceiveChanges(t *testing.T) {
	t.Parallel()
	users := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	tables := []string{"stores", "products", "sales", "whitelist_systems", "whitelist_users", "whitelist_entries"}
	ids := []string{uuid.NewString(), uuid.NewString()}
	rapid.Check(t, func(rt *rapid.T) {
		h := testHub(t, Config{})
		table := rapid.SampledFrom(tables).Draw(rt, "table")
		n := notification{
			Topic:     topicOfTable[table],
			Table:     table,
			Action:    rapid.SampledFrom([]string{"insert", "update", "delete"}).Draw(rt, "action"),
			ID:        rapid.SampledFrom(ids).Draw(rt, "id"),
			OwnerID:   rapid.SampledFrom(append([]string{""}, users...)).Draw(rt, "owner"),
			StoreID:   rapid.SampledFrom(append([]string{""}, ids...)).Draw(rt, "store"),
			SystemID:  rapid.SampledFrom(append([]string{""}, ids...)).Draw(rt, "system"),
			ProductID: rapid.SampledFrom(append([]string{""}, ids...)).Draw(rt, "product"),
			BuyerID:   rapid.SampledFrom(append([]string{""}, users...)).Draw(rt, "buyer"),
			Public:    rapid.Bool().Draw(rt, "public"),
		}
		viewer := rapid.SampledFrom(append([]string{""}, users...)).Draw(rt, "viewer")
		topic := rapid.SampledFrom([]string{TopicProducts, TopicSales, TopicStores, TopicWhitelist}).Draw(rt, "subTopic")
		filter := map[string]string{}
		for _, k := range filterKeys[topic] {
			if rapid.Bool().Draw(rt, "filter "+k) {
				filter[k] = rapid.SampledFrom(ids).Draw(rt, "value "+k)
			}
		}
		c := subscribedClient(h, viewer, subscription{id: "s1", topic: topic, filter: filter})
		unfiltered := subscribedClient(h, viewer, subscription{id: "s1", topic: n.Topic})

		permitted := viewer != "" && (n.OwnerID == viewer ||
			(n.Topic == TopicProducts && n.Public) ||
			(n.Topic == TopicSales && n.BuyerID == viewer) ||
			(n.Topic == TopicWhitelist && n.Table != "whitelist_systems" && n.BuyerID == viewer))
		if c.wants(n) && !permitted {
			rt.Fatalf("%+v reached viewer %q who may not see it", n, viewer)
		}
		if c.wants(n) && n.Topic != topic {
			rt.Fatalf("%+v reached a subscription to %s", n, topic)
		}
		if unfiltered.wants(n) != permitted {
			rt.Fatalf("unfiltered subscription wants = %v, permitted = %v for %+v", unfiltered.wants(n), permitted, n)
		}
	})
}

// FuzzParseMessage: no input panics the parser; every refusal is a short
// BAD_REQUEST message that never echoes the input at length; everything
// accepted is a well-formed request that parses the same way again.
func FuzzParseMessage(f *testing.F) {
	id := uuid.NewString()
	for _, s := range []string{
		`{"type":"auth","token":"abc"}`,
		`{"type":"subscribe","topic":"products","filter":{"storeId":"` + id + `"}}`,
		`{"type":"subscribe","topic":"sales","filter":{"productId":"` + id + `","storeId":"` + id + `"}}`,
		`{"type":"subscribe","topic":"whitelist","filter":{"systemId":"` + strings.ToUpper(id) + `"}}`,
		`{"type":"unsubscribe","subscription":"s1"}`,
		`{"type":"unsubscribe","topic":"stores","filter":{"id":"` + id + `"}}`,
		`{"type":"ping"}`,
		`{"type":"subscribe","topic":"products","filter":{"storeId":1}}`,
		`{"type":"subscribe","topic":"` + strings.Repeat("x", 500) + `"}`,
		`{"type":"x","token":null}`, `null`, `[]`, `{`, `"`, `{"type":"ping"} x`, "",
		`{"type":"subscribe","topic":"products","filter":{"storeId":"{` + id + `}"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMessage(data)
		if err != nil {
			var bad *errBadMessage
			if !errors.As(err, &bad) {
				t.Fatalf("parseMessage err = %T, want *errBadMessage", err)
			}
			if msg := err.Error(); msg == "" || len(msg) > 300 || !utf8.ValidString(msg) {
				t.Fatalf("error message %q: want 1 to 300 bytes of UTF-8", msg)
			}
			if len(data) > 40 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("error message echoes the input")
			}
			return
		}
		switch m.Type {
		case msgAuth:
			if m.Token == "" {
				t.Fatal("auth accepted without a token")
			}
		case msgSubscribe, msgUnsubscribe:
			if m.Subscription == "" {
				if _, ok := filterKeys[m.Topic]; !ok {
					t.Fatalf("accepted topic %q", m.Topic)
				}
			}
			for k, v := range m.Filter {
				if !contains(filterKeys[m.Topic], k) {
					t.Fatalf("accepted filter key %q for %s", k, m.Topic)
				}
				if u, err := uuid.Parse(v); err != nil || u.String() != v {
					t.Fatalf("filter value %q is not a canonical UUID", v)
				}
			}
		case msgPing:
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
		// What was accepted, written back, parses to the same request.
		w := map[string]any{"type": m.Type}
		if m.Token != "" {
			w["token"] = m.Token
		}
		if m.Topic != "" {
			w["topic"] = m.Topic
		}
		if m.Filter != nil {
			w["filter"] = m.Filter
		}
		if m.Subscription != "" {
			w["subscription"] = m.Subscription
		}
		b, _ := json.Marshal(w)
		again, err := parseMessage(b)
		if err != nil || again.Type != m.Type || again.Token != m.Token || again.Topic != m.Topic ||
			again.Subscription != m.Subscription || !sameFilter(again.Filter, m.Filter) {
			t.Fatalf("round trip of %s = %+v, %v; want %+v", b, again, err, m)
		}
	})
}

// Notifications that are not our triggers' are refused, not dispatched.
func TestParseNotificationRefusesStrays(t *testing.T) {
	t.Parallel()
	id := uuid.NewString()
	for _, p := range []string{
		``, `{}`, `not json`,
		`{"topic":"products","table":"stores","action":"insert","id":"` + id + `"}`,
		`{"topic":"users","table":"users","action":"insert","id":"` + id + `"}`,
		`{"topic":"stores","table":"stores","action":"truncate","id":"` + id + `"}`,
		`{"topic":"stores","table":"stores","action":"insert","id":"1"}`,
	} {
		if _, err := parseNotification(p); err == nil {
			t.Errorf("parseNotification(%q) err = nil, want an error", p)
		}
	}
	n, err := parseNotification(`{"topic":"stores","table":"stores","action":"update","id":"` + id + `","ownerId":"o"}`)
	if err != nil || n.StoreID != id {
		t.Fatalf("parseNotification(stores) = %+v, %v; want storeId = id", n, err)
	}
}

// A product update that leaves it inactive is a removal for non-owners,
// whether its record was announced or loaded (a row too large for NOTIFY);
// other changes are not.
func TestRemovesFromPublic(t *testing.T) {
	t.Parallel()
	up := notification{Topic: TopicProducts, Table: "products", Action: "update"}
	for _, c := range []struct {
		n    notification
		rec  any
		want bool
	}{
		{up, &store.ChangedProduct{IsActive: false}, true},
		{up, store.ChangedProduct{IsActive: false}, true},
		{up, &store.ChangedProduct{IsActive: true}, false},
		{notification{Topic: TopicProducts, Table: "products", Action: "insert"}, &store.ChangedProduct{}, false},
		{notification{Topic: TopicProducts, Table: "products", Action: "delete"}, &store.ChangedProduct{}, false},
		{notification{Topic: TopicStores, Table: "stores", Action: "update"}, &store.ChangedStore{}, false},
	} {
		if got := removesFromPublic(c.n, c.rec); got != c.want {
			t.Errorf("removesFromPublic(%s %s, %T) = %v, want %v", c.n.Action, c.n.Table, c.rec, got, c.want)
		}
	}
}
