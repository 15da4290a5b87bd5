package realtime

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"pgregory.net/rapid"
)

// TestProperty41_IndexedAudienceIsTheFullScan claims that the subscription
// index finds, for any change, exactly the clients a scan of every client
// with wants (the rule TestProperty_OnlyPermittedUsersReceiveChanges and
// Property 17 check) would find, each once, after any sequence of
// connections, subscriptions (several per client, any topic and filter),
// unsubscriptions and disconnects. 100 iterations (rapid's default).
func TestProperty41_IndexedAudienceIsTheFullScan(t *testing.T) {
	t.Parallel()
	users := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	tables := []string{"stores", "products", "sales", "whitelist_systems", "whitelist_users", "whitelist_entries"}
	topics := []string{TopicProducts, TopicSales, TopicStores, TopicWhitelist}
	rapid.Check(t, func(rt *rapid.T) {
		h := testHub(t, Config{})
		var live []*client
		for i := range rapid.IntRange(1, 12).Draw(rt, "clients") {
			// Some clients come with subscriptions (as the tests' clients
			// do), the others subscribe through the protocol's path.
			viewer := rapid.SampledFrom(append([]string{""}, users...)).Draw(rt, fmt.Sprintf("c%d viewer", i))
			c := newClient(h)
			c.userID = viewer
			drawSub := func(label string) subscription {
				topic := rapid.SampledFrom(topics).Draw(rt, label+" topic")
				filter := map[string]string{}
				for _, k := range filterKeys[topic] {
					if rapid.IntRange(0, 2).Draw(rt, label+" filter "+k) == 0 {
						filter[k] = rapid.SampledFrom(ids).Draw(rt, label+" value "+k)
					}
				}
				if len(filter) == 0 {
					filter = nil
				}
				return subscription{topic: topic, filter: filter}
			}
			if rapid.Bool().Draw(rt, fmt.Sprintf("c%d preset", i)) {
				for j := range rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("c%d presets", i)) {
					s := drawSub(fmt.Sprintf("c%d preset %d", i, j))
					s.id = fmt.Sprintf("s%d", j+1)
					c.subs = append(c.subs, s)
				}
				c.nextSub = len(c.subs)
				h.add(c)
			} else {
				h.add(c)
				for j := range rapid.IntRange(0, 4).Draw(rt, fmt.Sprintf("c%d subs", i)) {
					s := drawSub(fmt.Sprintf("c%d sub %d", i, j))
					c.subscribe(inMessage{Type: msgSubscribe, Topic: s.topic, Filter: s.filter})
				}
			}
			// Unsubscribe some, by id.
			c.mu.Lock()
			subs := append([]subscription(nil), c.subs...)
			c.mu.Unlock()
			for _, s := range subs {
				if rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("c%d unsubscribe %s", i, s.id)) == 0 {
					c.unsubscribe(inMessage{Type: msgUnsubscribe, Subscription: s.id})
				}
			}
			if rapid.IntRange(0, 4).Draw(rt, fmt.Sprintf("c%d disconnects", i)) == 0 {
				h.remove(c)
				continue
			}
			live = append(live, c)
		}
		for k := range rapid.IntRange(1, 5).Draw(rt, "changes") {
			table := rapid.SampledFrom(tables).Draw(rt, fmt.Sprintf("n%d table", k))
			n := notification{
				Topic:     topicOfTable[table],
				Table:     table,
				Action:    rapid.SampledFrom([]string{"insert", "update", "delete"}).Draw(rt, fmt.Sprintf("n%d action", k)),
				ID:        rapid.SampledFrom(ids).Draw(rt, fmt.Sprintf("n%d id", k)),
				OwnerID:   rapid.SampledFrom(append([]string{""}, users...)).Draw(rt, fmt.Sprintf("n%d owner", k)),
				StoreID:   rapid.SampledFrom(append([]string{""}, ids...)).Draw(rt, fmt.Sprintf("n%d store", k)),
				SystemID:  rapid.SampledFrom(append([]string{""}, ids...)).Draw(rt, fmt.Sprintf("n%d system", k)),
				ProductID: rapid.SampledFrom(append([]string{""}, ids...)).Draw(rt, fmt.Sprintf("n%d product", k)),
				BuyerID:   rapid.SampledFrom(append([]string{""}, users...)).Draw(rt, fmt.Sprintf("n%d buyer", k)),
				Public:    rapid.Bool().Draw(rt, fmt.Sprintf("n%d public", k)),
			}
			if n.Topic == TopicStores {
				n.StoreID = n.ID // as parseNotification sets it
			}
			want := map[*client]bool{}
			for _, c := range live {
				if c.wants(n) {
					want[c] = true
				}
			}
			h.mu.RLock()
			h.seq++
			got := h.subs.audience(&n, h.seq, nil)
			h.mu.RUnlock()
			seen := map[*client]bool{}
			for _, tg := range got {
				if seen[tg.c] {
					rt.Fatalf("change %+v: a client got it twice", n)
				}
				seen[tg.c] = true
				if !want[tg.c] {
					rt.Fatalf("change %+v reached a client whose wants is false (user %q)", n, tg.userID)
				}
				if tg.userID != tg.c.userID {
					rt.Fatalf("audience user %q, client user %q", tg.userID, tg.c.userID)
				}
			}
			if len(seen) != len(want) {
				rt.Fatalf("change %+v: index found %d clients, a full scan %d", n, len(seen), len(want))
			}
		}
		// Every client drains what subscribe and unsubscribe answered.
		for _, c := range live {
			for len(c.send) > 0 {
				<-c.send
			}
		}
	})
}

// textFrame's header follows RFC 6455 section 5.2 at each length boundary:
// FIN and the text opcode, no mask bit, and the 7-, 16- or 64-bit length.
func TestTextFrameHeader(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		f := textFrame(payload)
		if f[0] != 0x81 {
			t.Fatalf("textFrame(%d bytes)[0] = %#x, want 0x81", n, f[0])
		}
		if f[1]&0x80 != 0 {
			t.Fatalf("textFrame(%d bytes) is masked", n)
		}
		var got, hdr int
		switch l := int(f[1]); {
		case l < 126:
			got, hdr = l, 2
		case l == 126:
			got, hdr = int(f[2])<<8|int(f[3]), 4
			if n < 126 {
				t.Fatalf("textFrame(%d bytes) uses a 16-bit length", n)
			}
		default:
			for _, b := range f[2:10] {
				got = got<<8 | int(b)
			}
			hdr = 10
			if n <= 65535 {
				t.Fatalf("textFrame(%d bytes) uses a 64-bit length", n)
			}
		}
		if got != n || len(f) != hdr+n || string(f[hdr:]) != string(payload) {
			t.Fatalf("textFrame(%d bytes): length %d, frame %d bytes, header %d", n, got, len(f), hdr)
		}
	}
}

// pipeConn is the WebSocket side the writer needs, over one end of a
// net.Pipe: data frames go to NetConn, control frames are framed here.
type pipeConn struct{ nc net.Conn }

func (p pipeConn) ReadMessage() (int, []byte, error) { select {} }
func (p pipeConn) NetConn() net.Conn                 { return p.nc }
func (p pipeConn) WriteControl(op int, data []byte, _ time.Time) error {
	_, err := p.nc.Write(append([]byte{0x80 | byte(op), byte(len(data))}, data...))
	return err
}
func (p pipeConn) SetReadDeadline(time.Time) error   { return nil }
func (p pipeConn) SetWriteDeadline(time.Time) error  { return nil }
func (p pipeConn) SetReadLimit(int64)                {}
func (p pipeConn) SetPongHandler(func(string) error) {}
func (p pipeConn) Close() error                      { return p.nc.Close() }

// Frames queued while the writer is busy go out coalesced, in order, each
// a whole frame; the close frame follows the last of them.
func TestQueuedFramesArriveWholeAndInOrder(t *testing.T) {
	t.Parallel()
	h := testHub(t, Config{SendBuffer: 512})
	c := newClient(h)
	server, peer := net.Pipe()
	defer peer.Close()
	want := make([]string, 300)
	for i := range want {
		want[i] = fmt.Sprintf(`{"type":"change","n":%d,"pad":"%s"}`, i, strings.Repeat("x", i*3))
		c.enqueue(textFrame([]byte(want[i])))
	}
	c.shutdown(closeNormal, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.writeLoop(pipeConn{server})
	}()
	r := bufio.NewReader(peer)
	for i := 0; ; i++ {
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		n := int(hdr[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			_, _ = io.ReadFull(r, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			_, _ = io.ReadFull(r, l[:])
			n = int(binary.BigEndian.Uint64(l[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatalf("frame %d payload: %v", i, err)
		}
		if hdr[0] == 0x88 { // close
			if i != len(want) {
				t.Fatalf("close frame after %d frames, want %d", i, len(want))
			}
			break
		}
		if hdr[0] != 0x81 || i >= len(want) || string(payload) != want[i] {
			t.Fatalf("frame %d = %#x %q, want text %q", i, hdr[0], payload, want[min(i, len(want)-1)])
		}
	}
	peer.Close()
	<-done
}
