package marketplace_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// fund grants units to dev directly in the ledger.
func (e *env) fund(t fataler, dev string, units int) int {
	t.Helper()
	bal, err := store.NewMarketplace(e.db, e.kr).GrantCredits(context.Background(), dev, units, "test")
	if err != nil {
		t.Fatalf("GrantCredits err = %v", err)
	}
	return bal
}

// consume posts a consumption with key and Idempotency-Key idem ("" none).
func (e *env) consume(t fataler, key, idem, body string) resp {
	t.Helper()
	req := httptest.NewRequest("POST", "/api/developer/obfuscation/usage", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	return e.do(t, req)
}

// do sends req through the app and decodes its JSON body.
func (e *env) do(t fataler, req *http.Request) resp {
	t.Helper()
	res, err := e.srv.App().Test(req, -1)
	if err != nil {
		t.Fatalf("app.Test(%s %s) err = %v", req.Method, req.URL.Path, err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	r := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v", req.Method, req.URL.Path, err)
		}
	}
	return r
}

func TestCreditsConsumeReplayAndList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1000, marketplace.ScopeObfuscate)
	e.fund(t, dev, 100)
	sha := strings.Repeat("AB", 32)

	first := e.consume(t, key, "job-1", `{"units":30,"scriptSha256":"`+sha+`"}`)
	if first.Status != 201 || first.Body["balance"] != float64(70) || first.Body["units"] != float64(30) ||
		first.Body["scriptSha256"] != strings.ToLower(sha) || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first consumption = %d %s, want 201 balance 70", first.Status, first.Raw)
	}
	// Meanwhile another consumption moves the balance on.
	if r := e.consume(t, key, "job-2", `{"units":10}`); r.Status != 201 || r.Body["balance"] != float64(60) {
		t.Fatalf("second consumption = %d %s, want 201 balance 60", r.Status, r.Raw)
	}
	// A retry answers exactly what the first request got, and consumes nothing.
	again := e.consume(t, key, "job-1", `{"units":30,"scriptSha256":"`+strings.ToLower(sha)+`"}`)
	if again.Status != 201 || string(again.Raw) != string(first.Raw) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry = %d %s (replayed %q), want 201 %s", again.Status, again.Raw, again.Header.Get("Idempotent-Replayed"), first.Raw)
	}
	// The same key with another body is refused, and consumes nothing.
	checkCode(t, "reused Idempotency-Key", e.consume(t, key, "job-1", `{"units":31}`), 409, "CONFLICT")
	// Short: 402 and nothing consumed.
	checkCode(t, "too many units", e.consume(t, key, "job-3", `{"units":61}`), 402, vectabase.EINSUFFICIENTCREDITS)
	// A request without an Idempotency-Key consumes every time.
	for range 2 {
		if r := e.consume(t, key, "", `{"units":5}`); r.Status != 201 {
			t.Fatalf("consumption without Idempotency-Key = %d %s", r.Status, r.Raw)
		}
	}
	// The short request left no usage row, so its key can be used again.
	if r := e.consume(t, key, "job-3", `{"units":50}`); r.Status != 201 || r.Body["balance"] != float64(0) {
		t.Fatalf("consumption of the whole balance = %d %s, want balance 0", r.Status, r.Raw)
	}

	list := e.must(t, 200, "GET", "/api/developer/credits?limit=2", dev, nil)
	items, _ := list["items"].([]any)
	if list["balance"] != float64(0) || len(items) != 2 || list["nextCursor"] == nil {
		t.Fatalf("GET /api/developer/credits = %v, want balance 0, two items and a cursor", list)
	}
	total := 0
	cursor := ""
	for page := 0; page < 5; page++ {
		path := "/api/developer/credits?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		b := e.must(t, 200, "GET", path, dev, nil)
		for _, it := range b["items"].([]any) {
			total += int(it.(map[string]any)["units"].(float64))
		}
		next, _ := b["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if total != 100 {
		t.Fatalf("usage pages add up to %d units, want the 100 granted", total)
	}
	// Another developer sees none of it.
	other := e.user(t)
	if b := e.must(t, 200, "GET", "/api/developer/credits", other, nil); b["balance"] != float64(0) || len(b["items"].([]any)) != 0 {
		t.Fatalf("another developer's credits = %v", b)
	}
}

// checkCode fails unless r is a contract error body with status and code.
func checkCode(t fataler, what string, r resp, status int, code string) {
	t.Helper()
	checkErrorBody(t, what, r)
	if r.Status != status || r.Body["error"] != code {
		t.Fatalf("%s = %d %s, want %d %s", what, r.Status, r.Raw, status, code)
	}
}

func TestCreditsUsageRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1000, marketplace.ScopeObfuscate)
	_, noScope := e.newKey(t, dev, 1000, marketplace.ScopeWLRead)
	e.fund(t, dev, 10)
	checkCode(t, "no key", e.call(t, "POST", "/api/developer/obfuscation/usage", "", `{"units":1}`), 401, "UNAUTHORIZED")
	checkCode(t, "key without obfuscate", e.consume(t, noScope, "", `{"units":1}`), 403, "FORBIDDEN")
	checkCode(t, "bearer instead of key", e.call(t, "POST", "/api/developer/obfuscation/usage", dev, `{"units":1}`), 401, "UNAUTHORIZED")
	for _, body := range []string{`{}`, `{"units":0}`, `{"units":-1}`, `{"units":1.5}`, `{"units":"1"}`, `{"units":1000001}`,
		`{"units":1,"scriptSha256":"xyz"}`, `{"units":1,"scriptSha256":"` + strings.Repeat("g", 64) + `"}`, `{"units":1,"extra":1}`, `[]`, `{`, ``} {
		r := e.consume(t, key, "", body)
		checkErrorBody(t, "body "+body, r)
		if r.Status != 400 {
			t.Fatalf("body %s = %d %s, want 400", body, r.Status, r.Raw)
		}
	}
	checkCode(t, "long Idempotency-Key", e.consume(t, key, strings.Repeat("k", 256), `{"units":1}`), 400, "BAD_REQUEST")
	checkCode(t, "too large", e.consume(t, key, "", `{"units":1,"scriptSha256":"`+strings.Repeat("a", 5000)+`"}`), 413, "PAYLOAD_TOO_LARGE")
	if b := e.must(t, 200, "GET", "/api/developer/credits", dev, nil); b["balance"] != float64(10) {
		t.Fatalf("balance after refused requests = %v, want 10", b["balance"])
	}
	checkCode(t, "credits without bearer", e.call(t, "GET", "/api/developer/credits", "", nil), 401, "UNAUTHORIZED")
	checkCode(t, "bad cursor", e.call(t, "GET", "/api/developer/credits?cursor=zz", dev, nil), 400, "VALIDATION_FAILED")
}

// TestCreditsConsumptionsAreAudited: every consumption leaves an audit row
// naming the key, never the key itself.
func TestCreditsConsumptionsAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	keyID, key := e.newKey(t, dev, 1000, marketplace.ScopeObfuscate)
	e.fund(t, dev, 10)
	r := e.consume(t, key, "a", `{"units":3}`)
	if r.Status != 201 {
		t.Fatalf("consume = %d %s", r.Status, r.Raw)
	}
	e.consume(t, key, "a", `{"units":3}`) // a replay is audited too
	rows, err := e.db.Pool.Query(context.Background(), `SELECT actor_type, actor_id, resource_id, details::text FROM audit_logs WHERE action = 'credits.consume' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var typ, actor, res, details string
		if err := rows.Scan(&typ, &actor, &res, &details); err != nil {
			t.Fatal(err)
		}
		if typ != "api_key" || actor != keyID || res != r.Body["id"] || strings.Contains(details, key) || !strings.Contains(details, `"units": 3`) {
			t.Fatalf("audit row = %s %s %s %s", typ, actor, res, details)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("credits.consume audit rows = %d, want 2 (consumption and replay)", n)
	}
}

// TestCreditsConcurrentRetriesConsumeOnce: many concurrent requests with one
// Idempotency-Key consume once and all answer the same.
func TestCreditsConcurrentRetriesConsumeOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	_, key := e.newKey(t, dev, 100000, marketplace.ScopeObfuscate)
	e.fund(t, dev, 50)
	const n = 16
	out := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = e.consume(t, key, "same", `{"units":7}`) }()
	}
	wg.Wait()
	for i, r := range out {
		if r.Status != 201 || r.Body["id"] != out[0].Body["id"] || r.Body["balance"] != float64(43) {
			t.Fatalf("request %d = %d %s, want 201 with the first id and balance 43", i, r.Status, r.Raw)
		}
	}
}

// planEnv is an env whose plans are free:2, pro:3 (PLAN_DEFAULT def).
func planEnv(t *testing.T, def string) *env {
	t.Helper()
	db := pgtest.New(t)
	kr := newKeyring(t, db)
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := auth.New(ctx, auth.Config{Argon2: fastArgon2, MaxAttemptsPerIP: 1 << 20, MaxFailuresPerIP: 1 << 20}, db, kr, nopAuditor{}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(a.Routes())
	svc := marketplace.New(db, kr, nopAuditor{}, marketplace.Config{RequestLogFlush: 20 * time.Millisecond,
		PlanLimits: map[string]int{"free": 2, "pro": 3}, PlanDefault: def}, log, reg)
	srv.Mount(svc.Routes(authHooks(a)))
	e := &env{auth: a, db: db, kr: kr, srv: srv, svc: svc, logs: logs, reg: reg}
	t.Cleanup(func() { e.close(t) })
	return e
}

func (e *env) subscribe(t *testing.T, dev, plan, status string, periodEnd *time.Time) {
	t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `DELETE FROM developer_subscriptions WHERE developer_id = $1`, dev); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(context.Background(), `INSERT INTO developer_subscriptions (developer_id, plan, status, current_period_end)
		VALUES ($1, $2, $3, $4)`, dev, plan, status, periodEnd); err != nil {
		t.Fatal(err)
	}
}

// TestPlanCapsKeyLimits: the plan in force caps each key's own limit, from
// the subscription's status and period end, on verify and check alike.
func TestPlanCapsKeyLimits(t *testing.T) {
	t.Parallel()
	e := planEnv(t, "")
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1000, marketplace.ScopeWLRead)
	_, low := e.newKey(t, dev, 1)
	limitOf := func(k, path, body string) string {
		t.Helper()
		return e.call(t, "POST", path, "key:"+k, body).Header.Get("X-RateLimit-Limit")
	}
	if got := limitOf(key, "/api/developer/verify", "{}"); got != "1000" {
		t.Fatalf("no subscription, no PLAN_DEFAULT: limit %s, want the key's own 1000", got)
	}
	sub := e.must(t, 200, "GET", "/api/developer/subscription", dev, nil)
	if sub["plan"] != nil || sub["effectivePlan"] != nil || sub["limits"].(map[string]any)["rateLimitPerMinute"] != nil {
		t.Fatalf("subscription without one = %v", sub)
	}
	future, past := time.Now().Add(24*time.Hour), time.Now().Add(-time.Hour)
	cases := []struct {
		plan, status string
		end          *time.Time
		want         string
		effective    string
	}{
		{"pro", "active", &future, "3", "pro"},
		{"pro", "active", &past, "3", "pro"}, // Stripe renews active ones; a late renewal event must not drop the plan
		{"pro", "past_due", &future, "3", "pro"},
		{"pro", "past_due", &past, "2", "free"},
		{"pro", "canceled", &future, "3", "pro"},
		{"pro", "canceled", &past, "2", "free"},
		{"pro", "canceled", nil, "2", "free"},
		{"pro", "incomplete", &future, "2", "free"},
		{"enterprise", "active", &future, "2", "free"}, // a plan PLAN_LIMITS does not name
	}
	for _, c := range cases {
		e.subscribe(t, dev, c.plan, c.status, c.end)
		if got := limitOf(key, "/api/developer/verify", "{}"); got != c.want {
			t.Fatalf("%s %s (end %v): verify limit %s, want %s", c.plan, c.status, c.end, got, c.want)
		}
		if got := limitOf(key, "/api/whitelist/check", `{"licenseKey":"NOPE-NOPE"}`); got != c.want {
			t.Fatalf("%s %s: check limit %s, want %s", c.plan, c.status, got, c.want)
		}
		b := e.must(t, 200, "GET", "/api/developer/subscription", dev, nil)
		if b["plan"] != c.plan || b["status"] != c.status || b["effectivePlan"] != c.effective {
			t.Fatalf("%s %s: subscription = %v, want effective %s", c.plan, c.status, b, c.effective)
		}
	}
	// A key below its plan keeps its own limit.
	if got := limitOf(low, "/api/developer/verify", "{}"); got != "1" {
		t.Fatalf("key limited to 1 under plan free: limit %s, want 1", got)
	}
}

// TestPlanDefaultAppliesWithoutSubscription: with PLAN_DEFAULT set, a
// developer who never subscribed gets that plan's limit, and 429 past it.
func TestPlanDefaultAppliesWithoutSubscription(t *testing.T) {
	t.Parallel()
	e := planEnv(t, "free")
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1000)
	for i := 1; i <= 3; i++ {
		r := e.call(t, "POST", "/api/developer/verify", "key:"+key, "{}")
		want := 200
		if i == 3 {
			want = 429
		}
		if r.Status != want || r.Header.Get("X-RateLimit-Limit") != "2" {
			t.Fatalf("request %d = %d (limit %s), want %d under limit 2", i, r.Status, r.Header.Get("X-RateLimit-Limit"), want)
		}
	}
	b := e.must(t, 200, "GET", "/api/developer/subscription", dev, nil)
	if b["effectivePlan"] != "free" || b["limits"].(map[string]any)["rateLimitPerMinute"] != float64(2) {
		t.Fatalf("subscription = %v, want the free plan's 2", b)
	}
}

func TestNewPlansRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		limits map[string]int
		def    string
	}{
		{map[string]int{"pro": 600}, ""},
		{map[string]int{"free": 0}, ""},
		{map[string]int{"free": 60}, "gold"},
	} {
		if _, err := marketplace.NewPlans(c.limits, c.def); err == nil {
			t.Errorf("NewPlans(%v, %q) err = nil, want an error", c.limits, c.def)
		}
	}
	if p, err := marketplace.NewPlans(nil, ""); err != nil || p.Limits["pro"] != 600 || p.Limits["free"] != 60 {
		t.Errorf("NewPlans(nil) = %v, %v; want free 60, pro 600", p, err)
	}
}

// FuzzObfuscationUsage throws arbitrary bodies and Idempotency-Keys at the
// consumption route: any answer but 201, a contract 4xx body (402 when the
// balance is short) fails, and the balance never goes below zero.
func FuzzObfuscationUsage(f *testing.F) {
	e := newEnv(f)
	dev := e.user(f)
	_, key := e.newKey(f, dev, maxRateForFuzz, marketplace.ScopeObfuscate)
	e.fund(f, dev, 1000)
	for _, s := range []struct{ body, idem string }{
		{`{"units":1}`, ""}, {`{"units":1}`, "a"}, {`{"units":2}`, "a"}, {`{"units":1,"scriptSha256":"` + strings.Repeat("0", 64) + `"}`, "b"},
		{`{"units":1e999}`, ""}, {`{"units":null}`, "c"}, {`{"units":99999999999}`, ""}, {`[]`, ""}, {`null`, "\x00"}, {`{`, "é"},
	} {
		f.Add(s.body, s.idem)
	}
	f.Fuzz(func(t *testing.T, body, idem string) {
		req := httptest.NewRequest("POST", "/api/developer/obfuscation/usage", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		if idem != "" && !strings.ContainsAny(idem, "\r\n\x00") {
			req.Header.Set("Idempotency-Key", idem)
		}
		r := e.do(t, req)
		if r.Status >= 500 || (r.Status >= 400 && r.Body["requestId"] == nil) || (r.Status < 400 && r.Status != 201) {
			t.Fatalf("%q (Idempotency-Key %q) = %d %s", body, idem, r.Status, r.Raw)
		}
		bal, err := store.NewMarketplace(e.db, e.kr).CreditBalance(context.Background(), dev)
		if err != nil || bal < 0 {
			t.Fatalf("balance = %d, %v", bal, err)
		}
	})
}

// maxRateForFuzz keeps the fuzzing key clear of its rate limit.
const maxRateForFuzz = 1_000_000
