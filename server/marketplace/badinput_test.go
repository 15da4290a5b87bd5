package marketplace_test

import (
	"net/url"
	"strings"
	"testing"
)

// TestBadInput sends malformed ids, negative prices, huge pages, unknown
// fields and the like: each gets a clear 4xx in the contract's body whose
// message names the field, never a 500.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t)
	store := e.must(t, 201, "POST", "/api/stores", u, map[string]any{"name": "S", "slug": "bad-input"})["id"].(string)
	sys := e.must(t, 201, "POST", "/api/whitelist/systems", u, map[string]any{"name": "s"})["id"].(string)
	_, key := e.newKey(t, u, 1000, "whitelist:read")
	huge := strings.Repeat("x", 100<<10) // over the route's 64 KiB limit
	cases := []struct {
		method, path, who string
		body              any
		status            int
		code, mention     string
	}{
		{"GET", "/api/stores/not-a-uuid", u, nil, 400, "VALIDATION_FAILED", "id"},
		{"GET", "/api/stores/1", u, nil, 400, "VALIDATION_FAILED", "id"},
		{"DELETE", "/api/products/%20", u, nil, 400, "VALIDATION_FAILED", "id"},
		{"GET", "/api/products/'%3B--", "", nil, 400, "VALIDATION_FAILED", "id"},
		{"GET", "/api/whitelist/systems/" + sys + "/users/xyz", u, nil, 400, "VALIDATION_FAILED", "userId"},
		{"GET", "/api/stores?limit=100000", u, nil, 400, "VALIDATION_FAILED", "limit"},
		{"GET", "/api/stores?limit=0", u, nil, 400, "VALIDATION_FAILED", "limit"},
		{"GET", "/api/stores?limit=-5", u, nil, 400, "VALIDATION_FAILED", "limit"},
		{"GET", "/api/products?limit=abc", "", nil, 400, "VALIDATION_FAILED", "limit"},
		{"GET", "/api/sales?cursor=garbage", u, nil, 400, "VALIDATION_FAILED", "cursor"},
		{"GET", "/api/sales?from=yesterday", u, nil, 400, "VALIDATION_FAILED", "from"},
		{"GET", "/api/sales?storeId=1", u, nil, 400, "VALIDATION_FAILED", "storeId"},
		{"GET", "/api/products?mine=maybe", u, nil, 400, "VALIDATION_FAILED", "mine"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": -1}, 400, "VALIDATION_FAILED", "priceCents: must not be negative"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": 1.5}, 400, "BAD_REQUEST", "priceCents"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": 1e30}, 400, "BAD_REQUEST", "priceCents"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p"}, 400, "VALIDATION_FAILED", "priceCents"},
		{"POST", "/api/products", u, map[string]any{"storeId": "x", "name": "p", "priceCents": 1}, 400, "VALIDATION_FAILED", "storeId"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": 1, "currency": "dollars"}, 400, "VALIDATION_FAILED", "currency"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": 1, "downloadUrl": "javascript:alert(1)"}, 400, "VALIDATION_FAILED", "downloadUrl"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": 1, "metadata": []int{1}}, 400, "VALIDATION_FAILED", "metadata"},
		{"POST", "/api/products", u, map[string]any{"storeId": store, "name": "p", "priceCents": 1, "isAdmin": true}, 400, "BAD_REQUEST", "isAdmin"},
		{"POST", "/api/stores", u, map[string]any{"name": "", "slug": "x"}, 400, "VALIDATION_FAILED", "name"},
		{"POST", "/api/stores", u, map[string]any{"name": "n", "slug": "Not A Slug!"}, 400, "VALIDATION_FAILED", "slug"},
		{"POST", "/api/stores", u, map[string]any{"name": "n", "slug": "ok", "commissionBps": 0}, 400, "BAD_REQUEST", "commissionBps"},
		{"POST", "/api/stores", u, `{"name":"n"`, 400, "BAD_REQUEST", "malformed"},
		{"POST", "/api/stores", u, `[]`, 400, "BAD_REQUEST", "object"},
		{"POST", "/api/stores", u, `{"name":"a","slug":"b"} {}`, 400, "BAD_REQUEST", "one JSON value"},
		{"POST", "/api/stores", u, `{"name":"` + huge + `"}`, 413, "PAYLOAD_TOO_LARGE", ""},
		{"POST", "/api/whitelist/systems", u, map[string]any{"name": "s", "maxUsers": -3}, 400, "VALIDATION_FAILED", "maxUsers"},
		{"POST", "/api/whitelist/systems/" + sys + "/users", u, map[string]any{"robloxUserId": -1}, 400, "VALIDATION_FAILED", "robloxUserId"},
		{"POST", "/api/whitelist/systems/" + sys + "/users", u, map[string]any{}, 400, "VALIDATION_FAILED", "robloxUserId"},
		{"POST", "/api/whitelist/systems/" + sys + "/users", u, map[string]any{"robloxUserId": 1, "expiresAt": "soon"}, 400, "VALIDATION_FAILED", "expiresAt"},
		{"POST", "/api/whitelist/systems/" + sys + "/users", u, map[string]any{"robloxUserId": 1, "licenseKey": "mine"}, 400, "BAD_REQUEST", "licenseKey"},
		{"POST", "/api/developer/keys", u, map[string]any{"name": "k", "scopes": []string{"root"}}, 400, "VALIDATION_FAILED", "scopes[0]"},
		{"POST", "/api/developer/keys", u, map[string]any{"name": "k", "rateLimitPerMinute": 0}, 400, "VALIDATION_FAILED", "rateLimitPerMinute"},
		{"POST", "/api/developer/keys", u, map[string]any{"scopes": []string{}}, 400, "VALIDATION_FAILED", "name"},
		{"POST", "/api/whitelist/check", "key:" + key, map[string]any{}, 400, "VALIDATION_FAILED", "systemId"},
		{"POST", "/api/whitelist/check", "key:" + key, map[string]any{"systemId": sys}, 400, "VALIDATION_FAILED", "robloxUserId"},
		{"POST", "/api/whitelist/check", "key:" + key, map[string]any{"systemId": "nope", "robloxUserId": 1}, 400, "VALIDATION_FAILED", "systemId"},
		{"POST", "/api/whitelist/check", "key:" + key, map[string]any{"licenseKey": "VB-X", "systemId": sys}, 400, "VALIDATION_FAILED", "licenseKey"},
		{"POST", "/api/whitelist/check", "key:vb_live_short", map[string]any{"licenseKey": "VB-X"}, 401, "UNAUTHORIZED", "API key"},
		{"POST", "/api/whitelist/check", "", map[string]any{"licenseKey": "VB-X"}, 401, "UNAUTHORIZED", "X-API-Key"},
		{"POST", "/api/developer/verify", "key:" + key, `{"extra":1}`, 400, "BAD_REQUEST", "extra"},
		{"POST", "/api/developer/verify", "key:vb_live_" + strings.Repeat("A", 43), "{}", 401, "UNAUTHORIZED", "API key"},
		{"POST", "/api/whitelist/check", "key:" + key, `{"licenseKey":"` + strings.Repeat("K", 8<<10) + `"}`, 413, "PAYLOAD_TOO_LARGE", ""},
		{"POST", "/api/developer/verify", "key:" + key, `{"x":"` + strings.Repeat("K", 8<<10) + `"}`, 413, "PAYLOAD_TOO_LARGE", ""},
	}
	for _, c := range cases {
		r := e.call(t, c.method, c.path, c.who, c.body)
		if r.Status != c.status {
			t.Errorf("%s %s = %d %.200s, want %d", c.method, c.path, r.Status, r.Raw, c.status)
			continue
		}
		checkErrorBody(t, c.method+" "+c.path, r)
		if r.Body["error"] != c.code || !strings.Contains(r.Body["message"].(string), c.mention) {
			t.Errorf("%s %s = %s %q, want %s mentioning %q", c.method, c.path, r.Body["error"], r.Body["message"], c.code, c.mention)
		}
	}
}

// FuzzProductJSON throws arbitrary bodies at product creation: any answer
// but a 5xx or a non-contract body fails.
func FuzzProductJSON(f *testing.F) {
	e := newEnv(f)
	u := e.user(f)
	store := e.must(f, 201, "POST", "/api/stores", u, map[string]any{"name": "S", "slug": "fuzz"})["id"].(string)
	for _, s := range []string{
		`{"storeId":"` + store + `","name":"p","priceCents":1}`,
		`{"storeId":"` + store + `","name":"p","priceCents":-1}`,
		`{"storeId":"` + store + `","name":"p","priceCents":1,"metadata":{"a":[1,2]},"downloadUrl":null}`,
		`{"storeId":"` + store + `","name":"\u0000","priceCents":1}`,
		`{"storeId":null}`, `{}`, `[]`, `null`, `"x"`, `{"name":1e999}`, `{"priceCents":9223372036854775808}`,
		`{"storeId":"` + store + `","name":"p","priceCents":1,"currency":"ÉUR"}`,
		`{"storeId":"` + store + `","name":"p","priceCents":1,"whitelistSystemId":"` + store + `"}`,
		`{"storeId":"` + store + `","name":"p","priceCents":1,"developerProductId":null,"whitelistSystemId":"x"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := e.call(t, "POST", "/api/products", u, body)
		if r.Status >= 500 || (r.Status >= 400 && r.Body["requestId"] == nil) {
			t.Fatalf("POST /api/products %q = %d %s", body, r.Status, r.Raw)
		}
	})
}

// FuzzWhitelistCheckJSON throws arbitrary bodies at the hot check endpoint.
func FuzzWhitelistCheckJSON(f *testing.F) {
	e := newEnv(f)
	u := e.user(f)
	sys := e.must(f, 201, "POST", "/api/whitelist/systems", u, map[string]any{"name": "s"})["id"].(string)
	_, key := e.newKey(f, u, 1_000_000, "whitelist:read")
	for _, s := range []string{
		`{"systemId":"` + sys + `","robloxUserId":1}`, `{"licenseKey":"VB-AAAA"}`, `{"licenseKey":""}`,
		`{"systemId":"` + sys + `","robloxUserId":-1}`, `{"robloxUserId":"1"}`, `{"systemId":1}`, `{}`, ``, `{`,
		`{"licenseKey":"` + strings.Repeat("K", 300) + `"}`,
		`{"productId":"` + sys + `","robloxUserId":1,"hwid":"hw-1"}`, `{"licenseKey":"VB-AAAA","hwid":""}`,
		`{"licenseKey":"VB-AAAA","hwid":"\udcff"}`, `{"systemId":"` + sys + `","productId":"` + sys + `","robloxUserId":1}`,
		`{"licenseKey":"VB-AAAA","hwid":"` + strings.Repeat("h", 300) + `"}`, `{"productId":null,"robloxUserId":1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := e.call(t, "POST", "/api/whitelist/check", "key:"+key, body)
		if r.Status >= 500 || (r.Status >= 400 && r.Body["requestId"] == nil) {
			t.Fatalf("POST /api/whitelist/check %q = %d %s", body, r.Status, r.Raw)
		}
	})
}

// FuzzWhitelistUserJSON fuzzes the entry update, with its null handling.
func FuzzWhitelistUserJSON(f *testing.F) {
	e := newEnv(f)
	u := e.user(f)
	sys := e.must(f, 201, "POST", "/api/whitelist/systems", u, map[string]any{"name": "s"})["id"].(string)
	entry := e.must(f, 201, "POST", "/api/whitelist/systems/"+sys+"/users", u, map[string]any{"robloxUserId": 5})["id"].(string)
	for _, s := range []string{
		`{"expiresAt":null}`, `{"expiresAt":"2030-01-01T00:00:00Z"}`, `{"expiresAt":5}`, `{"resetHwid":true}`,
		`{"robloxUserId":0}`, `{"discordId":"123456789012345678"}`, `{"robloxUsername":"a b"}`,
		`{"status":"revoked"}`, `{"status":"active","resetHwid":true}`, `{"status":"gone"}`, `{"status":null}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := e.call(t, "PATCH", "/api/whitelist/systems/"+sys+"/users/"+entry, u, body)
		if r.Status >= 500 || (r.Status >= 400 && r.Body["requestId"] == nil) {
			t.Fatalf("PATCH entry %q = %d %s", body, r.Status, r.Raw)
		}
	})
}

// FuzzAPIKeyJSON throws arbitrary bodies at API key creation and change
// (both audited): any answer but a 5xx or a non-contract body fails.
func FuzzAPIKeyJSON(f *testing.F) {
	e := newEnv(f)
	u := e.user(f)
	id, _ := e.newKey(f, u, 100, "whitelist:read")
	for _, s := range []string{
		`{"name":"k"}`, `{"name":"k","scopes":["whitelist:read","whitelist:read"],"rateLimitPerMinute":60}`,
		`{"name":"","scopes":[]}`, `{"name":"k","scopes":["nope"]}`, `{"name":"k","rateLimitPerMinute":0}`,
		`{"name":"k","rateLimitPerMinute":1e999}`, `{"name":null}`, `{"scopes":null}`, `{}`, `[]`, `null`, `{`,
		`{"name":"\u0000"}`, `{"name":"k","key":"vb_live_x"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, r := range []resp{
			e.call(t, "POST", "/api/developer/keys", u, body),
			e.call(t, "PATCH", "/api/developer/keys/"+id, u, body),
		} {
			if r.Status >= 500 || (r.Status >= 400 && r.Body["requestId"] == nil) {
				t.Fatalf("%q = %d %s", body, r.Status, r.Raw)
			}
		}
	})
}

// FuzzStoreStatsQuery throws arbitrary from and to at the store stats:
// any answer but a 5xx or a non-contract body fails.
func FuzzStoreStatsQuery(f *testing.F) {
	e := newEnv(f)
	u := e.user(f)
	store := e.must(f, 201, "POST", "/api/stores", u, map[string]any{"name": "S", "slug": "fuzz-stats"})["id"].(string)
	for _, s := range [][2]string{
		{"", ""}, {"2026-01-01", "2026-01-31"}, {"2026-02-01", "2026-01-01"}, {"2020-01-01", "2026-01-01"},
		{"2026-01-01T10:00:00Z", "2026-01-02T23:59:59+05:00"}, {"0000-01-01", "9999-12-31"}, {"x", "%00"}, {"2026-13-45", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		r := e.call(t, "GET", "/api/stores/"+store+"/stats?from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to), u, nil)
		if r.Status >= 500 || (r.Status >= 400 && r.Body["requestId"] == nil) {
			t.Fatalf("stats from %q to %q = %d %s", from, to, r.Status, r.Raw)
		}
	})
}
