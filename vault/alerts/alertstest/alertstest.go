// Package alertstest is a local incoming webhook in the shape Slack and
// Discord accept, for tests of what reaches ALERT_WEBHOOK_URL.
package alertstest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Hook keeps the JSON body of every well-formed alert POSTed to it: a
// JSON object of exactly "text" and "content", equal and not empty (what
// vault/alerts sends). Anything else is answered 400 and counted in Bad.
type Hook struct {
	mu     sync.Mutex
	bodies []map[string]string
	bad    int
}

func (h *Hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h.mu.Lock()
	defer h.mu.Unlock()
	var m map[string]string
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &m) != nil ||
		len(m) != 2 || m["text"] == "" || m["text"] != m["content"] {
		h.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.bodies = append(h.bodies, m)
	w.WriteHeader(http.StatusNoContent)
}

// Bodies is a copy of the alerts received so far.
func (h *Hook) Bodies() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]string(nil), h.bodies...)
}

// Bad is how many requests were not a well-formed alert.
func (h *Hook) Bad() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad
}

// Matching returns the texts of the alerts that contain s.
func (h *Hook) Matching(s string) []string {
	var out []string
	for _, m := range h.Bodies() {
		if strings.Contains(m["text"], s) {
			out = append(out, m["text"])
		}
	}
	return out
}
