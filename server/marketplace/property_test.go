package marketplace_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store/pgtest"
)

// TestProperty9_RateLimitHoldsAcrossInstances claims: for any per-minute
// limit and any number of requests spread over two server instances on one
// database (each with its own pool and keyring, as two processes would
// be; one after another or all at once), no more than the limit succeed in
// a window, every request past it gets 429 RATE_LIMITED with Retry-After,
// and every response carries the X-RateLimit headers.
func TestProperty9_RateLimitHoldsAcrossInstances(t *testing.T) {
	t.Parallel()
	url, kek := pgtest.URL(t), newKEKFile(t)
	dbA, dbB := pgtest.Open(t, url), pgtest.Open(t, url)
	a := newInstance(t, dbA, openKeyring(t, dbA, kek))
	b := newInstance(t, dbB, openKeyring(t, dbB, kek))
	defer a.close(t)
	defer b.close(t)
	dev := a.user(t)
	rejectedTotal := 0
	rapid.Check(t, func(rt *rapid.T) {
		limit := rapid.IntRange(1, 8).Draw(rt, "limit")
		n := rapid.IntRange(0, 3*limit).Draw(rt, "requests")
		concurrent := rapid.Bool().Draw(rt, "concurrent")
		on := rapid.SliceOfN(rapid.Bool(), n, n).Draw(rt, "onSecondInstance")
		_, key := a.newKey(rt, dev, limit)

		results := make([]resp, n)
		send := func(i int) {
			inst := a
			if on[i] {
				inst = b
			}
			results[i] = inst.call(rt, "POST", "/api/developer/verify", "key:"+key, "{}")
		}
		if concurrent {
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() { defer wg.Done(); send(i) }()
			}
			wg.Wait()
		} else {
			for i := range n {
				send(i)
			}
		}
		type window struct{ ok, rejected int }
		windows := map[string]*window{}
		for i, r := range results {
			reset := r.Header.Get("X-RateLimit-Reset")
			if reset == "" || r.Header.Get("X-RateLimit-Limit") != fmt.Sprint(limit) || r.Header.Get("X-RateLimit-Remaining") == "" {
				rt.Fatalf("request %d: X-RateLimit headers missing or wrong: %v", i, r.Header)
			}
			w := windows[reset]
			if w == nil {
				w = &window{}
				windows[reset] = w
			}
			switch r.Status {
			case 200:
				w.ok++
			case 429:
				w.rejected++
				rejectedTotal++
				if r.Body["error"] != "RATE_LIMITED" || r.Header.Get("Retry-After") == "" {
					rt.Fatalf("request %d: 429 without RATE_LIMITED body or Retry-After: %s %v", i, r.Raw, r.Header)
				}
			default:
				rt.Fatalf("request %d: status %d %s", i, r.Status, r.Raw)
			}
		}
		for reset, w := range windows {
			if w.ok > limit {
				rt.Fatalf("window %s: %d requests succeeded, limit %d", reset, w.ok, limit)
			}
			// Requests that found the window under its limit all succeed:
			// a window that rejected any must have let exactly limit through.
			if w.rejected > 0 && w.ok != limit {
				rt.Fatalf("window %s: %d succeeded and %d were rejected, limit %d", reset, w.ok, w.rejected, limit)
			}
		}
	})
	got := testutil.ToFloat64(a.svcRejected()) + testutil.ToFloat64(b.svcRejected())
	if int(got) != rejectedTotal {
		t.Fatalf("vectabase_ratelimit_rejected_total = %v over both instances, want %d", got, rejectedTotal)
	}
}

// TestProperty10_EveryRequestIsLogged claims: every API request leaves
// exactly one log line with its request id, and every request to an API-key
// route that presented a known key leaves exactly one api_request_logs row
// with that request id and the key's id, once the instance has shut down;
// a request with no, a malformed or an unknown (revoked) key leaves none.
func TestProperty10_EveryRequestIsLogged(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := newKeyring(t, db)
	setup := newInstance(t, db, kr)
	defer setup.close(t)
	dev := setup.user(t)
	keyID, key := setup.newKey(t, dev, 1_000_000, "whitelist:read")
	_, unknown := setup.newKey(t, dev, 10)
	setup.must(t, 204, "DELETE", "/api/developer/keys/"+mustKeyID(t, setup, dev, unknown), dev, nil)
	ctx := context.Background()

	type sent struct {
		id      string
		keyPath bool
		keyID   string // "" when no valid key was used
	}
	rapid.Check(t, func(rt *rapid.T) {
		e := newInstance(t, db, kr)
		kinds := rapid.SliceOfN(rapid.IntRange(0, 7), 1, 12).Draw(rt, "requests")
		var reqs []sent
		for _, k := range kinds {
			var r resp
			s := sent{}
			switch k {
			case 0:
				r, s = e.call(rt, "POST", "/api/developer/verify", "key:"+key, "{}"), sent{keyPath: true, keyID: keyID}
			case 1:
				r, s = e.call(rt, "POST", "/api/developer/verify", "key:"+unknown, "{}"), sent{keyPath: true} // revoked: unknown
			case 2:
				r, s = e.call(rt, "POST", "/api/developer/verify", "", "{}"), sent{keyPath: true}
			case 3:
				r, s = e.call(rt, "POST", "/api/whitelist/check", "key:"+key, `{"licenseKey":"VB-NOPE"}`), sent{keyPath: true, keyID: keyID}
			case 4:
				r, s = e.call(rt, "POST", "/api/whitelist/check", "key:"+key, `{"bogus":1}`), sent{keyPath: true, keyID: keyID}
			case 5:
				r = e.call(rt, "GET", "/api/stores", dev, nil)
			case 6:
				r = e.call(rt, "GET", "/api/products/not-a-uuid", "", nil)
			case 7: // too large: refused with 413, still logged
				r, s = e.call(rt, "POST", "/api/whitelist/check", "key:"+key, `{"licenseKey":"`+strings.Repeat("K", 8<<10)+`"}`), sent{keyPath: true, keyID: keyID}
			}
			s.id = r.Header.Get("X-Request-ID")
			if s.id == "" {
				rt.Fatalf("response without X-Request-ID")
			}
			reqs = append(reqs, s)
		}
		e.close(t) // flushes the request logs

		lines := map[string]int{}
		sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
		for sc.Scan() {
			var l struct {
				RequestID string `json:"requestId"`
				Message   string `json:"message"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "request" {
				lines[l.RequestID]++
			}
		}
		for i, s := range reqs {
			if lines[s.id] != 1 {
				rt.Fatalf("request %d (%s): %d log lines, want 1", i, s.id, lines[s.id])
			}
			var n int
			var gotKey *string
			err := db.Pool.QueryRow(ctx, `SELECT count(*), min(api_key_id::text) FROM api_request_logs WHERE request_id = $1`, s.id).Scan(&n, &gotKey)
			if err != nil {
				rt.Fatal(err)
			}
			want := 0
			if s.keyPath && s.keyID != "" {
				want = 1
			}
			if n != want {
				rt.Fatalf("request %d (%s, API-key route %v): %d api_request_logs rows, want %d", i, s.id, s.keyPath, n, want)
			}
			if s.keyID != "" && (gotKey == nil || *gotKey != s.keyID) {
				rt.Fatalf("request %d: logged key %v, want %s", i, gotKey, s.keyID)
			}
			if s.keyPath && s.keyID == "" && gotKey != nil {
				rt.Fatalf("request %d with no valid key logged key %s", i, *gotKey)
			}
		}
	})
	var dup int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT request_id FROM api_request_logs GROUP BY request_id HAVING count(*) > 1) d`).Scan(&dup); err != nil || dup != 0 {
		t.Fatalf("request ids logged more than once: %d (err %v)", dup, err)
	}
	var used *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT last_used_at FROM developer_api_keys WHERE id = $1`, keyID).Scan(&used); err != nil || used == nil {
		t.Fatalf("last_used_at = %v, %v; want set by the log writer", used, err)
	}
}

func mustKeyID(t *testing.T, e *env, dev, key string) string {
	t.Helper()
	b := e.must(t, 200, "GET", "/api/developer/keys?limit=200", dev, nil)
	for _, it := range b["items"].([]any) {
		m := it.(map[string]any)
		if m["prefix"] == key[:12] {
			return m["id"].(string)
		}
	}
	t.Fatalf("key %s… not listed", key[:12])
	return ""
}

// TestProperty12_WhitelistChangesVisibleToNextCheck claims: after any
// sequence of whitelist changes (add, set or clear expiry, remove, turn the
// system off and on), the very next check, by player and by license key,
// answers what the changes say.
func TestProperty12_WhitelistChangesVisibleToNextCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1_000_000, "whitelist:read")
	type entry struct {
		id, license string
		expires     *time.Time
	}
	rapid.Check(t, func(rt *rapid.T) {
		sys := e.must(rt, 201, "POST", "/api/whitelist/systems", dev, map[string]any{"name": "s"})["id"].(string)
		active := true
		model := map[int64]*entry{}
		licenses := map[int64]string{} // survives removal: a removed key must stop working
		base := "/api/whitelist/systems/" + sys
		expiry := func(label string) (any, *time.Time) {
			switch rapid.IntRange(0, 2).Draw(rt, label) {
			case 0:
				return nil, nil
			case 1:
				t := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
				return t.Format(time.RFC3339), &t
			default:
				t := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
				return t.Format(time.RFC3339), &t
			}
		}
		steps := rapid.IntRange(1, 8).Draw(rt, "steps")
		for range steps {
			player := rapid.Int64Range(1, 4).Draw(rt, "player")
			switch op := rapid.IntRange(0, 3).Draw(rt, "op"); {
			case op == 0 && model[player] == nil:
				exp, at := expiry("expiresAt")
				body := map[string]any{"robloxUserId": player}
				if exp != nil {
					body["expiresAt"] = exp
				}
				u := e.must(rt, 201, "POST", base+"/users", dev, body)
				model[player] = &entry{id: u["id"].(string), license: u["licenseKey"].(string), expires: at}
				licenses[player] = model[player].license
			case op == 1 && model[player] != nil:
				exp, at := expiry("newExpiresAt")
				e.must(rt, 200, "PATCH", base+"/users/"+model[player].id, dev, map[string]any{"expiresAt": exp})
				model[player].expires = at
			case op == 2 && model[player] != nil:
				e.must(rt, 204, "DELETE", base+"/users/"+model[player].id, dev, nil)
				delete(model, player)
			case op == 3:
				active = !active
				e.must(rt, 200, "PATCH", base, dev, map[string]any{"isActive": active})
			}
			want := false
			if m := model[player]; m != nil && active {
				want = m.expires == nil || m.expires.After(time.Now())
			}
			got := e.must(rt, 200, "POST", "/api/whitelist/check", "key:"+key, map[string]any{"systemId": sys, "robloxUserId": player})
			if got["whitelisted"] != want {
				rt.Fatalf("check(player %d) = %v, want whitelisted %v (model %+v, active %v)", player, got, want, model[player], active)
			}
			if lic, ok := licenses[player]; ok {
				got := e.must(rt, 200, "POST", "/api/whitelist/check", "key:"+key, map[string]any{"licenseKey": lic})
				wantLic := want && model[player] != nil && model[player].license == lic
				if got["whitelisted"] != wantLic {
					rt.Fatalf("check(license of player %d) = %v, want whitelisted %v", player, got, wantLic)
				}
			}
		}
	})
}
