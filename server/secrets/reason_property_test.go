package secrets_test

import (
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
)

// TestProperty32_ReadReasonIsAuditedVerbatimOrRefused claims: for any
// reason string, a secret read either answers 200 and its audit row's
// details.reason is exactly the trimmed reason, or (for a reason over 200
// characters or with a control character) answers 400 VALIDATION_FAILED
// without the value and its audit row holds no reason. rapid's default
// 100 checks, all on one database.
func TestProperty32_ReadReasonIsAuditedVerbatimOrRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, admin := e.user("admin", e.h.Password())
	secret := e.h.Secret()
	if r := e.do("PUT", "/api/secrets/reasoned", map[string]any{"value": secret}, admin...); r.Status != 201 {
		t.Fatalf("PUT = %d %s", r.Status, r.Body)
	}
	rapid.Check(t, func(rt *rapid.T) {
		runes := rapid.RuneFrom(nil, unicode.Letter, unicode.Digit, unicode.Punct, unicode.Symbol, unicode.Space, unicode.Cc)
		reason := rapid.StringOfN(runes, 0, 260, -1).Draw(rt, "reason")
		trimmed := strings.TrimSpace(reason)
		valid := utf8.RuneCountInString(trimmed) <= 200 && !strings.ContainsFunc(trimmed, unicode.IsControl)
		target := "/api/secrets/reasoned?reason=" + url.QueryEscape(reason)
		var r resp
		if valid {
			r = e.reveal("GET", target, secret, admin...)
		} else {
			r = e.do("GET", target, nil, admin...)
		}
		ev := e.lastAudit()
		if ev.Action != "secret.read" {
			rt.Fatalf("last audit row is %s, want secret.read", ev.Action)
		}
		if valid {
			want := any(trimmed)
			if trimmed == "" {
				want = nil
			}
			if r.Status != 200 || ev.Result != vectabase.ResultAllowed || ev.Details["reason"] != want {
				rt.Fatalf("reason %q: %d, audit %+v; want 200 and details.reason %q", reason, r.Status, ev, trimmed)
			}
			return
		}
		if r.Status != 400 || errCode(r) != "VALIDATION_FAILED" || strings.Contains(string(r.Body), secret) ||
			ev.Result != vectabase.ResultFailure || ev.Details["reason"] != nil {
			rt.Fatalf("reason %q: %d %s, audit %+v; want 400 without the value and no reason in the row", reason, r.Status, r.Body, ev)
		}
	})
}
