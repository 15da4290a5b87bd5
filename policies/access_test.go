package policies_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/vectabase/vectabase/policies"
)

const uid = "5b0e3c1a-9f64-4c52-a2a8-5b3f3a1f2d10"

func TestShippedAccessPolicy(t *testing.T) {
	t.Parallel()
	a, err := policies.AccessPolicy()
	if err != nil {
		t.Fatalf("AccessPolicy() err = %v, want nil", err)
	}
	all := []policies.Capability{policies.CapRead, policies.CapCreate, policies.CapUpdate, policies.CapDelete, policies.CapList}
	cases := []struct {
		role, user, name string
		want             bool
	}{
		{"admin", uid, "stripe_secret_key", true},
		{"admin", uid, "dev/someone/x", true},
		{"local-operator", "", "anything/at/all", true},
		{"developer", uid, "dev/" + uid + "/db_password", true},
		{"developer", uid, "dev/" + uid + "/nested/deeper", true},
		{"developer", uid, "dev/" + uid, false},
		{"developer", uid, "dev/" + uid + "x/db", false},
		{"developer", uid, "dev/other/db", false},
		{"developer", uid, "stripe_secret_key", false},
		{"developer", "", "dev//x", false},
		{"user", uid, "dev/" + uid + "/x", false},
		{"nobody", uid, "x", false},
		{"", "", "x", false},
	}
	for _, tc := range cases {
		for _, c := range all {
			if got := a.Allowed(tc.role, tc.user, tc.name, c); got != tc.want {
				t.Errorf("Allowed(%q, %q, %q, %s) = %v, want %v", tc.role, tc.user, tc.name, c, got, tc.want)
			}
		}
	}
	if !a.Allowed("system", "", "stripe_webhook_secret", policies.CapRead) || a.Allowed("system", "", "stripe_webhook_secret", policies.CapUpdate) {
		t.Error("system must read, and only read, stripe_* credentials")
	}
	if a.Allowed("system", "", "dev/x/y", policies.CapRead) {
		t.Error("system must not read developers' secrets")
	}
	if a.Any("user", policies.CapList) || !a.Any("developer", policies.CapList) {
		t.Error("Any(list): users have none, developers some")
	}
}

func TestParseAccessRefusesBadPolicies(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		`{"roles":{"admin":[{"pattern":"*","capabilities":["sudo"]}]}}`,
		`{"roles":{"admin":[{"pattern":"","capabilities":["read"]}]}}`,
		`{"roles":{"admin":[{"pattern":"{{email}}/*","capabilities":["read"]}]}}`,
		`{"roles":{"admin":[{"pattern":"*","capabilities":["read"],"extra":1}]}}`,
		`{"roles":{"":[]}}`,
		`not json`,
	} {
		if _, err := policies.ParseAccess([]byte(bad)); err == nil {
			t.Errorf("ParseAccess(%s) err = nil, want an error", bad)
		}
	}
}

func TestUserIDIsLiteral(t *testing.T) {
	t.Parallel()
	a, err := policies.ParseAccess([]byte(`{"roles":{"dev":[{"pattern":"dev/{{user_id}}/*","capabilities":["read"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Allowed("dev", "*", "dev/victim/x", policies.CapRead) {
		t.Error("a user id of * matched another user's namespace")
	}
	if !a.Allowed("dev", "*", "dev/*/x", policies.CapRead) {
		t.Error("a user id of * did not match its own namespace")
	}
}

// globRegexp is the reference: the same glob through regexp.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`(?s:.*)`)
		case '?':
			b.WriteString(`(?s:.)`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// FuzzGlobMatchesRegexp checks the matcher against regexp on any pattern
// and name.
func FuzzGlobMatchesRegexp(f *testing.F) {
	for _, s := range [][2]string{{"*", ""}, {"a*b", "aXXb"}, {"dev/*/x", "dev/a/b/x"}, {"*a*a*a*", "aaaa"}, {"?", "é"}, {"a?c", "abc"}, {"**", "x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if strings.Contains(pattern, "{") || strings.Contains(pattern, "}") || len(pattern) > 64 || len(name) > 64 {
			return
		}
		if !utf8Valid(pattern) || !utf8Valid(name) {
			return
		}
		a, err := policies.ParseAccess([]byte(`{"roles":{"r":[{"pattern":` + quote(pattern) + `,"capabilities":["read"]}]}}`))
		if err != nil {
			return
		}
		want := globRegexp(pattern).MatchString(name)
		if got := a.Allowed("r", "", name, policies.CapRead); got != want {
			t.Fatalf("Allowed(pattern %q, name %q) = %v, want %v", pattern, name, got, want)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
