package realtime

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase/store"
)

// notification is the payload the triggers of migrations/00009_realtime.sql
// send on the vectabase_changes channel: what routing needs and, when it
// fits NOTIFY's limit, the record as the change left it.
type notification struct {
	Topic     string `json:"topic"`
	Table     string `json:"table"`
	Action    string `json:"action"`
	ID        string `json:"id"`
	OwnerID   string `json:"ownerId,omitempty"`
	StoreID   string `json:"storeId,omitempty"`
	SystemID  string `json:"systemId,omitempty"`
	ProductID string `json:"productId,omitempty"`
	BuyerID   string `json:"buyerId,omitempty"`
	Public    bool   `json:"public,omitempty"`
	// Record is the row's non-sensitive columns; absent when the row was
	// too large to announce (it is loaded by id instead).
	Record json.RawMessage `json:"record,omitempty"`
}

// topicOfTable says which topic each announced table belongs to; a
// notification naming another pairing is refused.
var topicOfTable = map[string]string{
	"stores":            TopicStores,
	"products":          TopicProducts,
	"sales":             TopicSales,
	"whitelist_systems": TopicWhitelist,
	"whitelist_users":   TopicWhitelist,
	"whitelist_entries": TopicWhitelist,
}

func parseNotification(payload string) (notification, error) {
	var n notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		return n, fmt.Errorf("realtime: notification is not JSON: %w", err)
	}
	if t, ok := topicOfTable[n.Table]; !ok || t != n.Topic {
		return n, fmt.Errorf("realtime: notification for table %q topic %q", n.Table, n.Topic)
	}
	switch n.Action {
	case "insert", "update", "delete":
	default:
		return n, fmt.Errorf("realtime: notification action %q", n.Action)
	}
	if _, err := uuid.Parse(n.ID); err != nil {
		return n, fmt.Errorf("realtime: notification id is not a UUID")
	}
	// A store is its own store: a stores subscription filtered by storeId
	// follows that store.
	if n.Topic == TopicStores {
		n.StoreID = n.ID
	}
	return n, nil
}

// visibleTo reports whether the user may see the change. Owners see every
// change of their stores and of what hangs off them (products, sales,
// whitelist systems and players, developer products' licenses); buyers see
// their own purchases and the licenses they issued; anyone signed in sees
// changes of active products, which are public anyway.
func (n notification) visibleTo(userID string) bool {
	if userID == "" {
		return false
	}
	if n.OwnerID == userID {
		return true
	}
	switch n.Topic {
	case TopicProducts:
		return n.Public
	case TopicSales:
		return n.BuyerID == userID
	case TopicWhitelist:
		// A license's buyer follows it; a system has no buyer.
		return n.Table != "whitelist_systems" && n.BuyerID == userID
	}
	return false
}

// routingKey is the value of a filter key for this change.
func (n notification) routingKey(key string) string {
	switch key {
	case "id":
		return n.ID
	case "storeId":
		return n.StoreID
	case "systemId":
		return n.SystemID
	case "productId":
		return n.ProductID
	}
	return ""
}

// matches reports whether the change falls under a subscription's topic and
// filter (every filter key must match).
func (n notification) matches(topic string, filter map[string]string) bool {
	if n.Topic != topic {
		return false
	}
	for k, v := range filter {
		if n.routingKey(k) != v {
			return false
		}
	}
	return true
}

// deletedRecord is what a delete event carries when the notification had no
// record (the row was too large to announce): the row is gone, so it holds
// the id and the routing keys, under the same names as the full record.
func (n notification) deletedRecord() map[string]any {
	r := map[string]any{"id": n.ID}
	switch n.Table {
	case "products":
		r["storeId"] = n.StoreID
	case "sales":
		r["storeId"] = n.StoreID
		r["productId"] = n.ProductID
	case "stores":
		if n.OwnerID != "" {
			r["ownerId"] = n.OwnerID
		}
	case "whitelist_systems":
		if n.OwnerID != "" {
			r["ownerId"] = n.OwnerID
		}
		if n.StoreID != "" {
			r["storeId"] = n.StoreID
		}
	case "whitelist_users":
		r["systemId"] = n.SystemID
	case "whitelist_entries":
		r["developerProductId"] = n.ProductID
	}
	return r
}

// kind tells whitelist systems and whitelisted players apart, which share
// the whitelist topic.
func (n notification) kind() string {
	switch n.Table {
	case "whitelist_systems":
		return "system"
	case "whitelist_users":
		return "user"
	case "whitelist_entries":
		return "entry"
	}
	return ""
}

// changeMessage is the event a subscribed client receives.
type changeMessage struct {
	Type   string `json:"type"`
	Topic  string `json:"topic"`
	Kind   string `json:"kind,omitempty"`
	Action string `json:"action"`
	ID     string `json:"id"`
	Record any    `json:"record"`
}

// removedMessage tells a subscriber that a row left what it may see: the
// id and the marker, no record.
type removedMessage struct {
	Type    string `json:"type"`
	Topic   string `json:"topic"`
	Kind    string `json:"kind,omitempty"`
	Action  string `json:"action"`
	ID      string `json:"id"`
	Removed bool   `json:"removed"`
}

// outMessage is every other message the server sends.
type outMessage struct {
	Type         string            `json:"type"`
	Error        string            `json:"error,omitempty"`
	Message      string            `json:"message,omitempty"`
	Subscription string            `json:"subscription,omitempty"`
	Topic        string            `json:"topic,omitempty"`
	Filter       map[string]string `json:"filter,omitempty"`
	UserID       string            `json:"userId,omitempty"`
}

// decodeRecord turns an announced record into the feed's record type for
// its table. Decoding into the explicit type (rather than passing the JSON
// on) means a key the type does not list never reaches a client, and every
// record is encoded the same way whether announced or loaded.
func decodeRecord(table string, raw json.RawMessage) (any, error) {
	var rec any
	switch table {
	case "stores":
		rec = &store.ChangedStore{}
	case "products":
		rec = &store.ChangedProduct{}
	case "sales":
		rec = &store.ChangedSale{}
	case "whitelist_systems":
		rec = &store.ChangedWhitelistSystem{}
	case "whitelist_users":
		rec = &store.ChangedWhitelistUser{}
	case "whitelist_entries":
		rec = &store.ChangedWhitelistEntry{}
	default:
		return nil, fmt.Errorf("realtime: no record type for table %q", table)
	}
	if err := json.Unmarshal(raw, rec); err != nil {
		return nil, fmt.Errorf("realtime: announced %s record: %w", table, err)
	}
	return rec, nil
}
