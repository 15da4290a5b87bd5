package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromium finds a Chromium binary on PATH; the browser tests skip without
// one (.ci/run installs Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium binary on PATH (chromium, chromium-browser, google-chrome or headless-shell): the console's browser tests need one; .ci/run installs Debian's chromium")
	return ""
}

// artifacts is where the screenshots go: $VECTABASE_ARTIFACTS when set,
// else the test's temporary folder.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VECTABASE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots in %s", dir)
	return dir
}

// browser starts headless Chromium with the flags a closed network needs
// (no Google hosts, no component updates) and a fresh profile, and records
// every URL the page requests.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	bin := chromium(t)
	// Chromium's helper processes can still write to the profile for a
	// moment after the browser is gone, which fails t.TempDir's cleanup
	// ("directory not empty"); remove it ourselves, retrying for a while.
	profile, err := os.MkdirTemp("", "vectabase-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("chromium profile %s not removed", profile)
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-default-browser-check", true), chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	var mu sync.Mutex
	var urls []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			urls = append(urls, e.Request.URL)
			mu.Unlock()
		}
	})
	if err := chromedp.Run(tctx, network.Enable()); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return tctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), urls...) }
}

// waitJS polls a JavaScript condition until it holds (bounded by ctx).
func waitJS(cond string) chromedp.Action {
	return chromedp.Poll(cond, nil, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second))
}

func shot(dir, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var buf []byte
		if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil { // quality 100: PNG
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
	})
}

// labelled holds when every input, select and button has a label, an
// aria-label or text.
const labelled = `[...document.querySelectorAll('input, select, button')].every((e) => (e.labels && e.labels.length > 0) || e.getAttribute('aria-label') || e.textContent.trim() !== '')`

func page(name string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.Evaluate(fmt.Sprintf("location.hash = %q", "#"+name), nil),
		waitJS(fmt.Sprintf("document.getElementById('view').dataset.ready === %q", name)),
		// Every control has a name a screen reader can say.
		waitJS(labelled),
	}
}

// textHas waits until the element with id has text containing want.
func textHas(id, want string) chromedp.Action {
	return waitJS(fmt.Sprintf("(document.getElementById(%q)?.textContent || '').includes(%q)", id, want))
}

func signIn(email, password string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.WaitVisible("#email", chromedp.ByID),
		chromedp.SendKeys("#email", email, chromedp.ByID),
		// Enter in the password field: the form works from the keyboard.
		chromedp.SendKeys("#password", password+kb.Enter, chromedp.ByID),
	}
}

// The console in a real browser against a real `vectabase serve`: an admin
// signs in, rotates the DEK and watches re-encryption reach 100%, destroys
// the old key, verifies the audit chain, reveals a secret with a reason and
// finds that reason in the audit row, makes and verifies a backup, and
// every page is screenshotted (at 1280 px, and the overview at 390 px). A
// user without the admin role gets the refusal and nothing else. The page
// carries the strict CSP and requests nothing but 127.0.0.1.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	chromium(t)
	_, env := backupEnv(t)
	const adminEmail, adminPassword = "sec-admin@example.com", "correct horse battery staple"
	env = append(env, "ADMIN_EMAIL="+adminEmail, "ADMIN_PASSWORD="+adminPassword,
		"ROTATION_SETTLE=1s", "ROTATION_RELOAD_INTERVAL=500ms", "ROTATION_POLL_INTERVAL=100ms", "ROTATION_BATCH_SIZE=5", "ROTATION_BATCH_PAUSE=50ms")
	s := startServe(t, env)
	base := "http://" + s.addr

	// The page's headers: strict CSP, no inline code allowed.
	resp, err := http.Get(base + "/console")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	if got := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || got != wantCSP {
		t.Fatalf("GET /console = %d, CSP %q, want 200 and %q", resp.StatusCode, got, wantCSP)
	}

	// Data to look at: secrets (so a rotation has values to re-encrypt) and
	// a plain user.
	tok := login(t, base, adminEmail, adminPassword)
	const secretName, secretValue = "console/db-password", "s3cr3t-for-the-console"
	for i := 0; i < 12; i++ {
		name, value := fmt.Sprintf("console/filler-%02d", i), fmt.Sprintf("filler-%d", i)
		if i == 0 {
			name, value = secretName, secretValue
		}
		if code, raw := httpCall(t, "PUT", base+"/api/secrets/"+url.PathEscape(name), tok, map[string]any{"value": value}); code != 201 {
			t.Fatalf("PUT secret %s = %d %s", name, code, raw)
		}
	}
	const userEmail, userPassword = "plain-user@example.com", "plain user password"
	if code, raw := httpCall(t, "POST", base+"/api/auth/register", "", map[string]any{"email": userEmail, "password": userPassword}); code != 201 {
		t.Fatalf("register = %d %s", code, raw)
	}

	// An API key over its limit: four calls at two a minute, two 429s.
	code, raw := httpCall(t, "POST", base+"/api/developer/keys", tok, map[string]any{"name": "console-test-key", "scopes": []string{"whitelist:read"}, "rateLimitPerMinute": 2})
	var created struct{ Key, Prefix string }
	if code != 201 || json.Unmarshal(raw, &created) != nil || created.Key == "" {
		t.Fatalf("create API key = %d %s", code, raw)
	}
	limited := 0
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest("POST", base+"/api/developer/verify", strings.NewReader(`{}`))
		req.Header.Set("X-API-Key", created.Key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 429 {
			limited++
		}
	}
	if limited != 2 {
		t.Fatalf("%d of 4 calls at 2 a minute were limited, want 2", limited)
	}

	dir := artifacts(t)
	ctx, requested := browser(t)
	const reason = "incident 4711 credential check"
	err = chromedp.Run(ctx,
		chromedp.Navigate(base+"/console"),
		signIn(adminEmail, adminPassword),
		waitJS("document.getElementById('view').dataset.ready === 'overview'"),
		textHas("ov-audit", "intact"), textHas("ov-kek", "local"), textHas("ov-health", "ready"),
		textHas("ov-429", "(2 over API-key limits)"),
		shot(dir, "overview-1280"),

		page("keys"),
		chromedp.Click("#rotate-dek", chromedp.ByID),
		textHas("rotation-text", "running"),
		textHas("rotation-text", "done, 100%"),
		waitJS("document.getElementById('rotation-progress').value === 100"),
		shot(dir, "keys-rotated"),
		chromedp.Click("#destroy-old", chromedp.ByID),
		textHas("destroy-result", "Destroyed data keys"),
		shot(dir, "keys"),

		page("secrets"),
		chromedp.Click(fmt.Sprintf(`button[data-secret=%q]`, secretName), chromedp.ByQuery),
		chromedp.WaitVisible("#reveal-reason", chromedp.ByID),
		chromedp.SendKeys("#reveal-reason", reason, chromedp.ByID),
		chromedp.Click(`#reveal-form button[type="submit"]`, chromedp.ByQuery),
		textHas("secret-plain", secretValue),
		shot(dir, "secrets"),

		page("audit"),
		chromedp.Click("#audit-verify", chromedp.ByID),
		textHas("audit-verify-result", "Chain intact"),
		chromedp.SetValue("#audit-action", "secret.read", chromedp.ByID),
		chromedp.Click(`#audit-filter button[type="submit"]`, chromedp.ByQuery),
		textHas("audit-rows", reason),
		shot(dir, "audit"),

		page("backups"),
		chromedp.Click("#backup-create", chromedp.ByID),
		textHas("backup-result", "Created backup"),
		chromedp.Click(`button[data-verify]`, chromedp.ByQuery),
		textHas("backup-result", "verified"),
		shot(dir, "backups"),

		page("apikeys"), textHas("apikey-usage", "console-test-key"), textHas("apikey-usage", created.Prefix), shot(dir, "apikeys"),
		page("users"), textHas("user-list", userEmail), shot(dir, "users"),

		chromedp.EmulateViewport(390, 844),
		page("overview"), textHas("ov-audit", "intact"), shot(dir, "overview-390"),
		// Readable at 390 px: nothing wider than the viewport but the
		// tables, which scroll in their own box.
		waitJS("document.documentElement.scrollWidth <= window.innerWidth"),
		page("keys"), waitJS("document.documentElement.scrollWidth <= window.innerWidth"), shot(dir, "keys-390"),
		chromedp.EmulateViewport(1280, 900),

		// The wrong role: a signed-in user who is not an admin.
		chromedp.Click("#signout", chromedp.ByID),
		chromedp.WaitVisible("#signin-form", chromedp.ByID),
		signIn(userEmail, userPassword),
		textHas("signin-error", "Sign-in refused"),
		shot(dir, "wrong-role"),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	var nav, view bool
	var viewText string
	var refreshStatus int
	if err := chromedp.Run(ctx,
		chromedp.Evaluate("document.getElementById('nav').hidden", &nav),
		chromedp.Evaluate("document.getElementById('view').hidden", &view),
		chromedp.Evaluate("document.getElementById('view').textContent", &viewText),
		chromedp.Evaluate(`fetch('/console/session/refresh', {method: 'POST', headers: {'X-Vectabase-Console': '1'}}).then((r) => r.status)`, &refreshStatus, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	); err != nil {
		t.Fatal(err)
	}
	if !nav || !view || viewText != "" || refreshStatus != 401 {
		t.Errorf("wrong-role user: nav hidden %v, view hidden %v, view text %q, cookie refresh %d; want only the refusal and no session", nav, view, viewText, refreshStatus)
	}

	// The reveal's audit row carries the reason.
	code, raw = httpCall(t, "GET", base+"/api/admin/audit?action=secret.read&resourceId="+url.QueryEscape(secretName), tok, nil)
	var pg struct {
		Items []struct {
			ActorType string         `json:"actorType"`
			Details   map[string]any `json:"details"`
		} `json:"items"`
	}
	if code != 200 || json.Unmarshal(raw, &pg) != nil {
		t.Fatalf("audit query = %d %s", code, raw)
	}
	found := false
	for _, e := range pg.Items {
		found = found || e.Details["reason"] == reason && e.ActorType == "user"
	}
	if !found {
		t.Errorf("no secret.read audit row with reason %q: %s", reason, raw)
	}
	if strings.Contains(string(raw), secretValue) {
		t.Errorf("the audit trail holds the secret's value")
	}

	for _, u := range requested() {
		if strings.HasPrefix(u, "data:") || strings.HasPrefix(u, "blob:") {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() != "127.0.0.1" {
			t.Errorf("the console requested %q: only 127.0.0.1 is allowed", u)
		}
	}
	for _, name := range []string{"overview-1280", "overview-390", "keys", "audit", "secrets", "backups", "apikeys", "users", "wrong-role"} {
		if st, err := os.Stat(filepath.Join(dir, name+".png")); err != nil || st.Size() == 0 {
			t.Errorf("screenshot %s.png missing", name)
		}
	}
}
