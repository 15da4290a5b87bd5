package discord_test

import (
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzSetupAPI: whatever path id, method and body a signed-in seller (or
// anyone, on the callback) sends to the set-up routes, the answer is a
// contract status with the error body, never a 500 or a panic.
func FuzzSetupAPI(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"POST", "permissions", `{"command":"/redeem","roleId":"100000000000000001"}`},
		{"POST", "permissions", `{"command":"whitelist  ADD","roleId":"1","allowed":false}`},
		{"POST", "products", `{"productId":"00000000-0000-0000-0000-000000000000","roleId":"12"}`},
		{"PATCH", "", `{"whitelistSystemId":null}`},
		{"PATCH", "", `{"whitelistSystemId":"x"}`},
		{"DELETE", "products/zz", ``},
		{"GET", "callback", `code=x&state=a.b&guild_id=1`},
		{"POST", "permissions", `{"command":1}`},
		{"POST", "products", `{"productId":"00000000-0000-0000-0000-000000000000","extra":1}`},
	} {
		f.Add(s.method, s.path, s.body, "100000000000000001")
	}
	e := newSellerEnv(f)
	f.Fuzz(func(t *testing.T, method, sub, body, guild string) {
		e.t = t
		switch method {
		case "GET", "POST", "PATCH", "DELETE":
		default:
			return
		}
		target := "/api/discord/servers/" + url.PathEscape(guild)
		if sub == "callback" {
			target = "/api/discord/install/callback?" + body
		} else if sub != "" {
			target += "/" + sub
		}
		if _, err := url.Parse(target); err != nil || strings.ContainsAny(target, " \t\r\n") {
			return
		}
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.sellerToken)
		res, err := e.srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 && res.StatusCode != 503 {
			t.Fatalf("%s %s %q = %d %s", method, target, body, res.StatusCode, b)
		}
		if res.StatusCode >= 400 && !strings.Contains(string(b), `"requestId"`) {
			t.Fatalf("%s %s = %d without the error body: %s", method, target, res.StatusCode, b)
		}
	})
}
