package secrets_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode"

	"github.com/prometheus/common/expfmt"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/server/canarytest"
)

// uniqueTag makes every generated value unique, so a value that rapid
// shrinks to something short and plain ("AAAA…") cannot turn up by chance
// in a hash, a hex dump or a timestamp and fail the test falsely.
var uniqueTag atomic.Int64

// cores maps each generated value to its core: an ASCII run that any
// copy of the value holds verbatim however it was escaped (JSON, logfmt,
// Prometheus labels), so a leak is found even where escaping rewrote the
// rest of the value.
var cores sync.Map

// secretValue draws a secret value: any valid text (letters of every
// script, digits, punctuation, symbols, spaces, control characters) around
// a 12-character ASCII core, sometimes shaped like a credential the
// redactor knows (a Stripe key, an API key, a JWT) and sometimes not at
// all, so only code that never logs values keeps it out of the logs.
func secretValue(rt *rapid.T, label string) string {
	shape := rapid.SampledFrom([]string{"", "", "sk_live_", "vb_live_", "eyJhbGciOiJFZERTQSJ9.", "whsec_", "postgres://u:"}).Draw(rt, label+" shape")
	runes := rapid.RuneFrom(nil, unicode.Letter, unicode.Digit, unicode.Punct, unicode.Symbol, unicode.Space, unicode.Cc)
	head := rapid.StringOfN(runes, 0, 150, -1).Draw(rt, label+" head")
	core := rapid.StringMatching(`[A-Za-z0-9]{12}`).Draw(rt, label+" core") + fmt.Sprintf("Q%d", uniqueTag.Add(1))
	tail := rapid.StringOfN(runes, 0, 150, -1).Draw(rt, label+" tail")
	v := shape + head + core + tail
	cores.Store(v, core)
	return v
}

// forms are the ways a leaked value could be written: as it is, JSON
// escaped (with and without HTML escaping, as zerolog and encoding/json
// write strings), its core, and the hex of its bytes and of its core
// (bytea columns in a dump).
func forms(v string) []string {
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	html, _ := json.Marshal(v)
	core, _ := cores.Load(v)
	return []string{
		v,
		strings.Trim(strings.TrimSpace(plain.String()), `"`),
		strings.Trim(string(html), `"`),
		core.(string),
		hex.EncodeToString([]byte(v)),
		hex.EncodeToString([]byte(core.(string))),
	}
}

// TestProperty16_SecretValueNonLogging claims: for random secret values
// and random sequences of vault operations over HTTP (put with and without
// check-and-set, get of the current or an older version, versions, list,
// delete, and the same operations refused: another user's namespace, no
// token, a body that does not decode), no value appears in any log line,
// metric, audit row, stored row (as text or hex), or response other than a
// successful read of that very value by a caller allowed to see it; and the
// reads return what the model of the vault says they hold. rapid's default
// 100 iterations, one database shared by all of them (each iteration uses
// its own secret names).
func TestProperty16_SecretValueNonLogging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, admin := e.user("admin", e.h.Password())
	devID, dev := e.user("developer", e.h.Password())
	app := e.srv.App()
	const maxVersions = 3 // newEnv's vault.Config

	iteration := 0
	rapid.Check(t, func(rt *rapid.T) {
		iteration++
		// The model: every version's value per secret name, oldest first,
		// the newest maxVersions kept; the next version number.
		type secret struct {
			versions map[int]string
			current  int
		}
		model := map[string]*secret{}
		var values []string
		type seenResp struct {
			what   string
			body   string
			reveal string // the one value this response may hold
		}
		var responses []seenResp
		call := func(what, method, target string, body any, reveal string, headers ...string) (int, []byte) {
			var b any
			switch x := body.(type) {
			case nil:
			case string:
				b = x
			default:
				raw, _ := json.Marshal(x)
				b = raw
			}
			resp, err := app.Test(canarytest.Request(method, target, b, headers...), -1)
			if err != nil {
				rt.Fatalf("%s: %v", what, err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var hdr strings.Builder
			_ = resp.Header.Write(&hdr)
			responses = append(responses, seenResp{what: fmt.Sprintf("%s = %d", what, resp.StatusCode), body: hdr.String() + "\n" + string(raw), reveal: reveal})
			return resp.StatusCode, raw
		}
		names := []string{fmt.Sprintf("p16_%d_a", iteration), fmt.Sprintf("p16_%d_b", iteration), fmt.Sprintf("dev/%s/p16_%d", devID, iteration)}
		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for i := range steps {
			name := rapid.SampledFrom(names).Draw(rt, "name")
			path := "/api/secrets/" + url.PathEscape(name)
			s := model[name]
			op := rapid.SampledFrom([]string{"put", "put", "put-cas", "get", "get-old", "versions", "list", "delete",
				"refused-put", "refused-get", "refused-delete", "anonymous-put", "malformed-put"}).Draw(rt, fmt.Sprintf("op %d", i))
			what := fmt.Sprintf("step %d %s %s", i, op, name)
			switch op {
			case "put", "put-cas":
				v := secretValue(rt, "value")
				values = append(values, v)
				body := map[string]any{"value": v}
				conflict := false
				if op == "put-cas" {
					cur := 0
					if s != nil {
						cur = s.current
					}
					expected := rapid.SampledFrom([]int{cur, cur + 1}).Draw(rt, "expectedVersion")
					body["expectedVersion"] = expected
					conflict = expected != cur
				}
				status, raw := call(what, "PUT", path, body, "", admin...)
				switch {
				case conflict && status != 409:
					rt.Fatalf("%s with a stale expectedVersion = %d %s, want 409", what, status, raw)
				case conflict:
				case s == nil && status != 201, s != nil && status != 200:
					rt.Fatalf("%s = %d %s, want 201 on create, 200 on a new version", what, status, raw)
				default:
					if s == nil {
						s = &secret{versions: map[int]string{}}
						model[name] = s
					}
					s.current++
					s.versions[s.current] = v
					delete(s.versions, s.current-maxVersions)
				}
			case "get", "get-old":
				target, version := path, 0
				if s != nil {
					version = s.current
				}
				if op == "get-old" {
					version = rapid.IntRange(1, max(1, version)).Draw(rt, "version")
					target += fmt.Sprintf("?version=%d", version)
				}
				want, ok := "", false
				if s != nil {
					want, ok = s.versions[version]
				}
				status, raw := call(what, "GET", target, nil, want, admin...)
				if !ok {
					if status != 404 {
						rt.Fatalf("%s = %d %s, want 404 (no such version)", what, status, raw)
					}
					break
				}
				var got struct{ Value string }
				if err := json.Unmarshal(raw, &got); status != 200 || err != nil || got.Value != want {
					rt.Fatalf("%s = %d %q, want 200 with version %d's value", what, status, raw, version)
				}
			case "versions":
				status, raw := call(what, "GET", path+"/versions", nil, "", admin...)
				if (s == nil && status != 404) || (s != nil && status != 200) {
					rt.Fatalf("%s = %d %s", what, status, raw)
				}
			case "list":
				if status, raw := call(what, "GET", "/api/secrets?limit=100", nil, "", admin...); status != 200 {
					rt.Fatalf("%s = %d %s", what, status, raw)
				}
				call(what+" as developer", "GET", "/api/secrets", nil, "", dev...)
			case "delete":
				status, raw := call(what, "DELETE", path, nil, "", admin...)
				if (s == nil && status != 404) || (s != nil && status != 204) {
					rt.Fatalf("%s = %d %s", what, status, raw)
				}
				delete(model, name)
			case "refused-put", "refused-get", "refused-delete":
				// The developer may use only their own namespace; the
				// admin's names are refused.
				if strings.HasPrefix(name, "dev/") {
					name = names[0]
					path = "/api/secrets/" + name
				}
				method, body := "GET", any(nil)
				switch op {
				case "refused-put":
					v := secretValue(rt, "refused value")
					values = append(values, v)
					method, body = "PUT", map[string]any{"value": v}
				case "refused-delete":
					method = "DELETE"
				}
				if status, raw := call(what, method, path, body, "", dev...); status != 403 {
					rt.Fatalf("%s = %d %s, want 403", what, status, raw)
				}
			case "anonymous-put":
				v := secretValue(rt, "anonymous value")
				values = append(values, v)
				if status, raw := call(what, "PUT", path, map[string]any{"value": v}, ""); status != 401 {
					rt.Fatalf("%s = %d %s, want 401", what, status, raw)
				}
			case "malformed-put":
				v := secretValue(rt, "malformed value")
				values = append(values, v)
				quoted, _ := json.Marshal(v)
				bodies := []string{`{"value":` + string(quoted), `{"value":` + string(quoted) + `,"other":1}`, `{"value":[` + string(quoted) + `]}`, string(quoted)}
				body := rapid.SampledFrom(bodies).Draw(rt, "malformed body")
				if status, raw := call(what, "PUT", path, body, "", admin...); status != 400 {
					rt.Fatalf("%s = %d %s, want 400", what, status, raw)
				}
			}
		}

		texts := canarytest.Tables(t, e.db, "audit_logs", "secrets", "secret_versions", "users", "sessions")
		texts["logs"] = e.h.Logs()
		texts["metrics"] = metricsText(rt, e)
		for _, v := range values {
			for where, text := range texts {
				for _, f := range forms(v) {
					if strings.Contains(text, f) {
						rt.Fatalf("secret value %q found in %s", v, where)
					}
				}
			}
			for _, r := range responses {
				if r.reveal == v {
					continue
				}
				for _, f := range forms(v)[:4] {
					if strings.Contains(r.body, f) {
						rt.Fatalf("secret value %q found in the response to %s: %s", v, r.what, r.body)
					}
				}
			}
		}
	})
}

func metricsText(rt *rapid.T, e *env) string {
	mfs, err := e.h.Registry.Gather()
	if err != nil {
		rt.Fatalf("gather metrics: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		_, _ = expfmt.MetricFamilyToText(&b, mf)
	}
	return b.String()
}
