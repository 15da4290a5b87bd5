package realtime

// The subscription index: the hub finds a change's audience by looking up
// the change's routing keys, instead of asking every connected client
// whether it wants the change. With a thousand connections on an instance,
// asking each one (a mutex and a walk over its filters, per change) cost
// more than the whole rest of the dispatch; a lookup costs the same
// whether ten or ten thousand clients are connected, and then only the
// subscriptions filed under the change's keys are checked.
//
// Each subscription is filed once, under the most selective key of its
// filter (id, then systemId, productId, storeId), or under its topic alone
// when it has no filter. A change is looked up under each of its routing
// keys and its bare topic, so every subscription whose filter could match
// is found exactly once; the full filter and the visibility rule
// (notification.visibleTo) are then checked as before. A client with
// several matching subscriptions still gets a change once.

// indexKeyOrder is the order in which a subscription's filter keys are
// preferred as its index key: the most selective first.
var indexKeyOrder = []string{"id", "systemId", "productId", "storeId"}

// bucketKey names one list of subscriptions: a topic and one filter
// key=value, or the topic alone (key and value empty).
type bucketKey struct {
	topic, key, value string
}

// filterKV is one key=value of a filter, as a slice entry: checking a
// short slice is cheaper than ranging over a map on every change.
type filterKV struct{ key, value string }

// entry is one subscription of one client, as filed in the index. userID
// is the client's user when it subscribed: a connection never changes user
// (authenticate refuses another user's token), so it stays right.
type entry struct {
	c      *client
	subID  string
	userID string
	filter []filterKV
}

// matches reports whether the change falls under the entry's filter (its
// topic matched already, by the bucket it came from).
func (e *entry) matches(n *notification) bool {
	for _, kv := range e.filter {
		if n.routingKey(kv.key) != kv.value {
			return false
		}
	}
	return true
}

// subIndex files subscriptions by bucket. It is guarded by Hub.mu.
type subIndex map[bucketKey][]*entry

func indexKeyOf(s subscription) bucketKey {
	for _, k := range indexKeyOrder {
		if v, ok := s.filter[k]; ok {
			return bucketKey{topic: s.topic, key: k, value: v}
		}
	}
	return bucketKey{topic: s.topic}
}

// add files subscription s of client c, whose user is userID.
func (x subIndex) add(c *client, userID string, s subscription) {
	e := &entry{c: c, subID: s.id, userID: userID}
	for k, v := range s.filter {
		e.filter = append(e.filter, filterKV{k, v})
	}
	k := indexKeyOf(s)
	x[k] = append(x[k], e)
}

// remove takes subscription s of client c out of the index.
func (x subIndex) remove(c *client, s subscription) {
	k := indexKeyOf(s)
	list := x[k]
	for i, e := range list {
		if e.c == c && e.subID == s.id {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			list = list[:last]
			break
		}
	}
	if len(list) == 0 {
		delete(x, k)
	} else {
		x[k] = list
	}
}

// target is one client a change goes to, with the user it is signed in
// as (for the owner-only parts of an event).
type target struct {
	c      *client
	userID string
}

// audience appends to out every client that subscribed to n and may see
// it, each once. seq must be new for every call: it marks the clients
// already taken. The caller holds Hub.mu (read) and is the only caller at
// a time (the dispatcher), which owns client.mark.
func (x subIndex) audience(n *notification, seq uint64, out []target) []target {
	look := func(k bucketKey) {
		for _, e := range x[k] {
			if e.c.mark == seq || !e.matches(n) || !n.visibleTo(e.userID) {
				continue
			}
			e.c.mark = seq
			out = append(out, target{c: e.c, userID: e.userID})
		}
	}
	look(bucketKey{topic: n.Topic})
	for _, k := range indexKeyOrder {
		if v := n.routingKey(k); v != "" {
			look(bucketKey{topic: n.Topic, key: k, value: v})
		}
	}
	return out
}
