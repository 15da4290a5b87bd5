package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// Topics are what a client can subscribe to.
const (
	TopicProducts  = "products"
	TopicSales     = "sales"
	TopicStores    = "stores"
	TopicWhitelist = "whitelist"
)

// filterKeys lists, per topic, the filter keys a subscription may use. Each
// key names a routing key of the change notification (see
// migrations/00009_realtime.sql); "id" is the changed row's own id.
var filterKeys = map[string][]string{
	TopicProducts:  {"id", "storeId"},
	TopicSales:     {"id", "storeId", "productId"},
	TopicStores:    {"id", "storeId"},
	TopicWhitelist: {"id", "storeId", "systemId", "productId"},
}

// Message types a client sends.
const (
	msgAuth        = "auth"
	msgSubscribe   = "subscribe"
	msgUnsubscribe = "unsubscribe"
	msgPing        = "ping"
)

// inMessage is a message from a client, after parseMessage has checked it.
type inMessage struct {
	Type         string
	Token        string            // auth
	Topic        string            // subscribe, unsubscribe
	Filter       map[string]string // subscribe, unsubscribe; nil: none
	Subscription string            // unsubscribe by id
}

// wireMessage is the JSON a client sends. Filter values are decoded as raw
// JSON so a number or an object gets a message that says which key is
// wrong.
type wireMessage struct {
	Type         string                     `json:"type"`
	Token        *string                    `json:"token"`
	Topic        *string                    `json:"topic"`
	Filter       map[string]json.RawMessage `json:"filter"`
	Subscription *string                    `json:"subscription"`
}

// errBadMessage is the error of every malformed message; its text is what
// the client reads after BAD_REQUEST, so it never repeats the message's
// content beyond a short, quoted name.
type errBadMessage struct{ msg string }

func (e *errBadMessage) Error() string { return e.msg }

func badf(format string, args ...any) error {
	return &errBadMessage{msg: fmt.Sprintf(format, args...)}
}

// quoteName shows a client-supplied name in an error message, cut short so
// an error can never echo a long payload back (or into a log).
func quoteName(s string) string {
	const max = 32
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// parseMessage checks one text message from a client. Every failure is an
// *errBadMessage with a message fit for the client.
func parseMessage(data []byte) (inMessage, error) {
	var w wireMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return inMessage{}, badf("message is not a JSON object of the realtime protocol: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return inMessage{}, badf("message must be a single JSON object")
	}
	m := inMessage{Type: w.Type}
	switch w.Type {
	case msgAuth:
		if w.Token == nil || *w.Token == "" {
			return m, badf("auth: token is required")
		}
		if w.Topic != nil || w.Filter != nil || w.Subscription != nil {
			return m, badf("auth: only type and token are allowed")
		}
		m.Token = *w.Token
	case msgSubscribe:
		if w.Token != nil || w.Subscription != nil {
			return m, badf("subscribe: only type, topic and filter are allowed")
		}
		if w.Topic == nil {
			return m, badf("subscribe: topic is required (one of %s)", topicList())
		}
		if err := parseTopicFilter(&m, *w.Topic, w.Filter); err != nil {
			return m, err
		}
	case msgUnsubscribe:
		if w.Token != nil {
			return m, badf("unsubscribe: token is not allowed")
		}
		switch {
		case w.Subscription != nil && (w.Topic != nil || w.Filter != nil):
			return m, badf("unsubscribe: give either subscription or topic (and filter), not both")
		case w.Subscription != nil:
			if *w.Subscription == "" {
				return m, badf("unsubscribe: subscription must not be empty")
			}
			m.Subscription = *w.Subscription
		case w.Topic != nil:
			if err := parseTopicFilter(&m, *w.Topic, w.Filter); err != nil {
				return m, err
			}
		default:
			return m, badf("unsubscribe: subscription or topic is required")
		}
	case msgPing:
		if w.Token != nil || w.Topic != nil || w.Filter != nil || w.Subscription != nil {
			return m, badf("ping: only type is allowed")
		}
	case "":
		return m, badf("type is required (auth, subscribe, unsubscribe or ping)")
	default:
		return m, badf("unknown message type %s (auth, subscribe, unsubscribe or ping)", quoteName(w.Type))
	}
	return m, nil
}

func parseTopicFilter(m *inMessage, topic string, filter map[string]json.RawMessage) error {
	keys, ok := filterKeys[topic]
	if !ok {
		return badf("%s: unknown topic %s (one of %s)", m.Type, quoteName(topic), topicList())
	}
	m.Topic = topic
	if len(filter) == 0 {
		return nil
	}
	m.Filter = make(map[string]string, len(filter))
	for k, raw := range filter {
		if !contains(keys, k) {
			return badf("%s: topic %s cannot be filtered by %s (allowed: %s)", m.Type, topic, quoteName(k), strings.Join(keys, ", "))
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return badf("%s: filter.%s must be a string", m.Type, k)
		}
		id, err := uuid.Parse(v)
		if err != nil || len(v) != 36 {
			return badf("%s: filter.%s must be a UUID", m.Type, k)
		}
		m.Filter[k] = id.String()
	}
	return nil
}

// jsonProblem says what is wrong with a message without quoting it.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %s has the wrong type", quoteName(typ.Field))
		}
		return "expected an object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return "unknown field " + quoteName(strings.Trim(name, `"`))
	default:
		return "invalid JSON"
	}
}

func topicList() string {
	ts := make([]string, 0, len(filterKeys))
	for t := range filterKeys {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return strings.Join(ts, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sameFilter reports whether two filters select the same changes.
func sameFilter(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
