package marketplace_test

import (
	"context"
	"strings"
	"testing"
)

// TestAuthorization_SecondUserCannotReachFirstUsersResources sends every
// bearer route, as a second user, at the first user's resources: each
// answers 404 (or, for lists, leaves them out), and nothing changes. A
// meta-check makes sure the table covers every bearer route the area mounts.
func TestAuthorization_SecondUserCannotReachFirstUsersResources(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	alice, bob := e.user(t), e.user(t)
	store := e.must(t, 201, "POST", "/api/stores", alice, map[string]any{"name": "A", "slug": "alice-store"})["id"].(string)
	product := e.must(t, 201, "POST", "/api/products", alice, map[string]any{"storeId": store, "name": "p", "priceCents": 1, "isActive": false})["id"].(string)
	sys := e.must(t, 201, "POST", "/api/whitelist/systems", alice, map[string]any{"name": "s"})["id"].(string)
	entry := e.must(t, 201, "POST", "/api/whitelist/systems/"+sys+"/users", alice, map[string]any{"robloxUserId": 1})["id"].(string)
	keyID, _ := e.newKey(t, alice, 10)
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO sales (product_id, store_id, amount_cents) VALUES ($1, $2, 1)`, product, store); err != nil {
		t.Fatal(err)
	}
	// Alice's credits, usage and subscription.
	e.fund(t, alice, 10)
	_, obf := e.newKey(t, alice, 10, "obfuscate")
	usage := e.consume(t, obf, "", `{"units":1}`).Body["id"].(string)
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO developer_subscriptions (developer_id, plan, status) VALUES ($1, 'alice-plan', 'active')`, alice); err != nil {
		t.Fatal(err)
	}
	patch := map[string]any{"name": "mine now"}
	cases := []struct {
		method, path string
		body         any
		want         int
		// for lists: the first user's id must not appear
		absent string
	}{
		{"GET", "/api/stores", nil, 200, store},
		{"POST", "/api/stores", map[string]any{"name": "B", "slug": "bob-store"}, 201, ""},
		{"GET", "/api/stores/" + store, nil, 404, ""},
		{"PATCH", "/api/stores/" + store, patch, 404, ""},
		{"PUT", "/api/stores/" + store, patch, 404, ""},
		{"DELETE", "/api/stores/" + store, nil, 404, ""},
		{"GET", "/api/stores/" + store + "/stats", nil, 404, ""},
		{"GET", "/api/me/licenses", nil, 200, entry},
		{"GET", "/api/products", nil, 200, product},
		{"GET", "/api/products?storeId=" + store, nil, 200, product},
		{"POST", "/api/products", map[string]any{"storeId": store, "name": "x", "priceCents": 1}, 404, ""},
		{"GET", "/api/products/" + product, nil, 404, ""},
		{"PATCH", "/api/products/" + product, patch, 404, ""},
		{"PATCH", "/api/products/" + product, map[string]any{"whitelistSystemId": sys}, 404, ""},
		{"PUT", "/api/products/" + product, patch, 404, ""},
		{"DELETE", "/api/products/" + product, nil, 404, ""},
		{"GET", "/api/sales", nil, 200, store},
		{"GET", "/api/sales?storeId=" + store, nil, 200, store},
		{"GET", "/api/whitelist/systems", nil, 200, sys},
		{"POST", "/api/whitelist/systems", map[string]any{"name": "b", "storeId": store}, 404, ""},
		{"GET", "/api/whitelist/systems/" + sys, nil, 404, ""},
		{"PATCH", "/api/whitelist/systems/" + sys, patch, 404, ""},
		{"PUT", "/api/whitelist/systems/" + sys, patch, 404, ""},
		{"DELETE", "/api/whitelist/systems/" + sys, nil, 404, ""},
		{"GET", "/api/whitelist/systems/" + sys + "/users", nil, 404, ""},
		{"POST", "/api/whitelist/systems/" + sys + "/users", map[string]any{"robloxUserId": 2}, 404, ""},
		{"GET", "/api/whitelist/systems/" + sys + "/users/" + entry, nil, 404, ""},
		{"PATCH", "/api/whitelist/systems/" + sys + "/users/" + entry, map[string]any{"robloxUsername": "bob_was_here"}, 404, ""},
		{"PUT", "/api/whitelist/systems/" + sys + "/users/" + entry, map[string]any{"robloxUsername": "bob_was_here"}, 404, ""},
		{"DELETE", "/api/whitelist/systems/" + sys + "/users/" + entry, nil, 404, ""},
		{"GET", "/api/developer/keys", nil, 200, keyID},
		{"POST", "/api/developer/keys", map[string]any{"name": "bob"}, 201, ""},
		{"GET", "/api/developer/keys/" + keyID, nil, 404, ""},
		{"PATCH", "/api/developer/keys/" + keyID, patch, 404, ""},
		{"DELETE", "/api/developer/keys/" + keyID, nil, 404, ""},
		{"GET", "/api/developer/credits", nil, 200, usage},
		{"GET", "/api/developer/subscription", nil, 200, "alice-plan"},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		r := e.call(t, c.method, c.path, bob, c.body)
		if r.Status != c.want {
			t.Errorf("%s %s as another user = %d %s, want %d", c.method, c.path, r.Status, r.Raw, c.want)
		}
		if c.absent != "" && strings.Contains(string(r.Raw), c.absent) {
			t.Errorf("%s %s as another user shows the first user's %s", c.method, c.path, c.absent)
		}
		if r.Status >= 400 {
			checkErrorBody(t, c.method+" "+c.path, r)
		}
		covered[c.method+" "+routeShape(c.path)] = true
	}
	// Without a token every bearer route is 401.
	for _, rt := range e.svc.Routes(authHooks(e.auth)) {
		if rt.Path == "/api/whitelist/check" || rt.Path == "/api/developer/verify" || rt.Path == "/api/developer/obfuscation/usage" {
			continue
		}
		if !covered[rt.Method+" "+rt.Path] {
			t.Errorf("route %s %s is not in the authorization table", rt.Method, rt.Path)
		}
	}
	// Alice's resources are untouched.
	e.must(t, 200, "GET", "/api/stores/"+store, alice, nil)
	e.must(t, 200, "GET", "/api/products/"+product, alice, nil)
	e.must(t, 200, "GET", "/api/whitelist/systems/"+sys+"/users/"+entry, alice, nil)
	if got := e.must(t, 200, "GET", "/api/developer/keys/"+keyID, alice, nil); got["name"] != "k" {
		t.Fatalf("alice's key was renamed: %v", got)
	}
}

// TestAuthorization_BearerRoutesNeedAToken checks that every bearer route
// answers 401 without a token (product reads excepted: they are public).
func TestAuthorization_BearerRoutesNeedAToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, rt := range e.svc.Routes(authHooks(e.auth)) {
		path := strings.NewReplacer(":userId", "00000000-0000-0000-0000-000000000001", ":id", "00000000-0000-0000-0000-000000000002").Replace(rt.Path)
		r := e.call(t, rt.Method, path, "", "{}")
		want := 401
		if rt.Method == "GET" && strings.HasPrefix(rt.Path, "/api/products") {
			want = 0 // public: 200 or 404
		}
		if want != 0 && r.Status != want {
			t.Errorf("%s %s without credentials = %d, want %d", rt.Method, rt.Path, r.Status, want)
		}
		if r.Status >= 400 {
			checkErrorBody(t, rt.Method+" "+rt.Path, r)
		}
	}
}

// routeShape turns a concrete path back into its route pattern.
func routeShape(path string) string {
	path, _, _ = strings.Cut(path, "?")
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if len(p) == 36 && strings.Count(p, "-") == 4 {
			if i == 6 {
				parts[i] = ":userId"
			} else {
				parts[i] = ":id"
			}
		}
	}
	return strings.Join(parts, "/")
}
