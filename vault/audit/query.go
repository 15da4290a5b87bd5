package audit

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Filter selects audit entries for the admin listing; zero fields match
// everything. Since is inclusive, Until exclusive. Cursor is a page's
// NextCursor; Limit defaults to 50 and is at most 500.
type Filter struct {
	ActorType    string
	ActorID      string
	Action       string
	ResourceType string
	ResourceID   string
	Result       string
	Since        time.Time
	Until        time.Time
	Limit        int
	Cursor       string
}

// Entry is one audit row as the admin API shows it: the columns of
// audit_logs under camelCase names.
type Entry struct {
	ID           int64          `json:"id"`
	OccurredAt   time.Time      `json:"occurredAt"`
	ActorType    string         `json:"actorType"`
	ActorID      string         `json:"actorId,omitempty"`
	Action       string         `json:"action"`
	ResourceType string         `json:"resourceType,omitempty"`
	ResourceID   string         `json:"resourceId,omitempty"`
	Result       string         `json:"result"`
	IPAddress    string         `json:"ipAddress,omitempty"`
	RequestID    string         `json:"requestId,omitempty"`
	Details      map[string]any `json:"details"`
	// PrevHash and Hash are the chain links, hex; Verify checks them.
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
}

// Page is one page of entries, newest first. NextCursor is nil on the last
// page.
type Page struct {
	Items      []Entry `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

const (
	defaultLimit = 50
	maxLimit     = 500
)

// Query lists entries matching f, newest first. A malformed cursor or an
// out-of-range limit is VALIDATION_FAILED.
func (l *Log) Query(ctx context.Context, f Filter) (Page, error) {
	sf := store.AuditFilter{
		ActorType: f.ActorType, ActorID: f.ActorID, Action: f.Action,
		ResourceType: f.ResourceType, ResourceID: f.ResourceID, Result: f.Result,
		Since: f.Since, Until: f.Until, Limit: f.Limit,
	}
	switch {
	case sf.Limit == 0:
		sf.Limit = defaultLimit
	case sf.Limit < 0 || sf.Limit > maxLimit:
		return Page{}, vectabase.Errorf(vectabase.EVALIDATION, "limit: must be between 1 and %d", maxLimit)
	}
	if f.Cursor != "" {
		id, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, vectabase.Errorf(vectabase.EVALIDATION, "cursor: not a cursor from a previous page")
		}
		sf.BeforeID = id
	}
	// One row more than asked tells whether there is a next page.
	want := sf.Limit
	sf.Limit++
	rows, err := l.db.QueryAuditLogs(ctx, sf)
	if err != nil {
		return Page{}, fmt.Errorf("audit: query: %w", err)
	}
	page := Page{Items: make([]Entry, 0, min(len(rows), want))}
	for i, r := range rows {
		if i == want {
			c := encodeCursor(page.Items[want-1].ID)
			page.NextCursor = &c
			break
		}
		e := Entry{ID: r.ID, OccurredAt: r.OccurredAt.UTC(), ActorType: r.ActorType, ActorID: r.ActorID,
			Action: r.Action, ResourceType: r.ResourceType, ResourceID: r.ResourceID, Result: r.Result,
			IPAddress: r.IP, RequestID: r.RequestID, Details: map[string]any{},
			PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash)}
		_ = json.Unmarshal(r.Details, &e.Details)
		page.Items = append(page.Items, e)
	}
	return page, nil
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'a' {
		return 0, fmt.Errorf("bad cursor")
	}
	id, err := strconv.ParseInt(string(b[1:]), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("bad cursor")
	}
	return id, nil
}
