package discord_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/auth"
)

// grantsEnv is a seller's installed guild with its whitelist system and a
// product whose buyers get buyerRole.
func grantsEnv(t *testing.T) *env {
	t.Helper()
	e := newSellerEnv(t)
	if status, body := e.install(true, "0"); status != http.StatusCreated {
		t.Fatalf("install = %d %v", status, body)
	}
	if status, _, body := e.api("PATCH", "/api/discord/servers/"+guildID, e.sellerToken, map[string]any{"whitelistSystemId": e.system}); status != 200 {
		t.Fatalf("PATCH server = %d %v", status, body)
	}
	if status, _, body := e.api("POST", "/api/discord/servers/"+guildID+"/products", e.sellerToken, map[string]any{"productId": e.prodID, "roleId": buyerRole}); status != http.StatusCreated {
		t.Fatalf("POST product = %d %v", status, body)
	}
	return e
}

func (e *env) grantsPage(query string) (int, map[string]any) {
	e.t.Helper()
	status, _, body := e.api("GET", "/api/discord/servers/"+guildID+"/grants"+query, e.sellerToken, nil)
	return status, body
}

// TestGrantsListAndRetry: the seller lists the role grants the bot owes
// (filtered by status, paged) and retries a failed one, which is audited
// and done at once when Discord agrees; a grant whose change was rolled
// back, or one not failed, is refused; another's guild is not found.
func TestGrantsListAndRetry(t *testing.T) {
	t.Parallel()
	e := grantsEnv(t)
	ctx := context.Background()

	// A redeem Discord refuses is rolled back: its grant fails and is not
	// owed any more.
	e.discord.setStatus(http.StatusForbidden)
	if r := e.run(command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", e.newKey(791))})); !strings.Contains(r.content(), "nothing was changed") {
		t.Fatalf("refused redeem: %q", r.content())
	}
	// A removal Discord refuses stays owed; the worker gives it up.
	e.discord.setStatus(http.StatusNoContent)
	e.add(adminID, adminPerms, nil, otherID, robloxName)
	e.discord.setStatus(http.StatusForbidden)
	e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(otherID))))
	if _, err := e.db.Pool.Exec(ctx, `UPDATE bot_role_grants SET state = 'failed' WHERE action = 'remove'`); err != nil {
		t.Fatal(err)
	}
	e.discord.setStatus(http.StatusNoContent)

	status, body := e.grantsPage("?status=failed")
	items, _ := body["items"].([]any)
	if status != 200 || len(items) != 2 || body["nextCursor"] != nil {
		t.Fatalf("GET grants?status=failed = %d %v, want 2 failed", status, body)
	}
	var rolledBack, removal string
	for _, it := range items {
		g := it.(map[string]any)
		if g["state"] != "failed" || g["guildId"] != guildID || g["roleId"] != buyerRole || g["lastStatus"] != float64(403) {
			t.Errorf("grant %v", g)
		}
		if _, leaked := g["interactionToken"]; leaked {
			t.Errorf("grant %v shows its interaction token", g)
		}
		if g["action"] == "add" {
			rolledBack = g["id"].(string)
		} else {
			removal = g["id"].(string)
		}
	}
	// Paging: one at a time, newest first, every grant once.
	var seen []string
	for cursor, pages := "", 0; pages < 10; pages++ {
		q := "?limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		status, body := e.grantsPage(q)
		if status != 200 {
			t.Fatalf("GET grants%s = %d %v", q, status, body)
		}
		for _, it := range body["items"].([]any) {
			seen = append(seen, it.(map[string]any)["id"].(string))
		}
		next, _ := body["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if n := e.count(`SELECT count(*) FROM bot_role_grants`); len(seen) != n || n != 3 {
		t.Errorf("paged through %d grants, table holds %d, want 3", len(seen), n)
	}

	for _, c := range []struct {
		query string
		want  int
	}{{"?status=owed", 400}, {"?limit=0", 400}, {"?cursor=zz", 400}} {
		if status, body := e.grantsPage(c.query); status != c.want || body["error"] != "VALIDATION_FAILED" {
			t.Errorf("GET grants%s = %d %v, want %d", c.query, status, body, c.want)
		}
	}

	retry := func(id string) (int, map[string]any) {
		status, _, body := e.api("POST", "/api/discord/servers/"+guildID+"/grants/"+id+"/retry", e.sellerToken, nil)
		return status, body
	}
	if status, body := retry(rolledBack); status != http.StatusConflict || !strings.Contains(body["message"].(string), "taken back") {
		t.Errorf("retry of a rolled-back grant = %d %v, want 409", status, body)
	}
	before := len(e.discord.requests())
	status, body = retry(removal)
	if status != 200 || body["state"] != "done" || body["id"] != removal {
		t.Fatalf("retry = %d %v, want 200 done", status, body)
	}
	dr := e.discord.requests()
	if len(dr) != before+1 || dr[len(dr)-1].Method != "DELETE" || dr[len(dr)-1].Path != "/guilds/"+guildID+"/members/"+otherID+"/roles/"+buyerRole {
		t.Errorf("Discord requests after the retry = %+v, want one DELETE of the role", dr[before:])
	}
	if status, body := retry(removal); status != http.StatusConflict {
		t.Errorf("retry of a done grant = %d %v, want 409", status, body)
	}
	if status, body := retry("not-a-uuid"); status != 400 {
		t.Errorf("retry of a malformed id = %d %v, want 400", status, body)
	}
	var retries []vectabase.AuditEvent
	for _, ev := range e.audit.all() {
		if ev.Action == "discord.grant_retry" {
			retries = append(retries, ev)
		}
	}
	if len(retries) != 1 || retries[0].ActorType != vectabase.ActorUser || retries[0].ActorID != e.owner || retries[0].ResourceID != removal {
		t.Errorf("grant_retry audit events = %+v, want one by the seller", retries)
	}

	// Another signed-in user sees nothing of the guild.
	if _, err := e.auth.Register(ctx, "other@example.com", "correct horse battery", auth.RequestMeta{IP: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	res, err := e.auth.Login(ctx, "other@example.com", "correct horse battery", auth.RequestMeta{IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := e.api("GET", "/api/discord/servers/"+guildID+"/grants", res.Token, nil); status != http.StatusNotFound {
		t.Errorf("another user's GET grants = %d %v, want 404", status, body)
	}
	if status, _, body := e.api("POST", "/api/discord/servers/"+guildID+"/grants/"+removal+"/retry", res.Token, nil); status != http.StatusNotFound {
		t.Errorf("another user's retry = %d %v, want 404", status, body)
	}
	if status, _, _ := e.api("GET", "/api/discord/servers/"+guildID+"/grants", "", nil); status != http.StatusUnauthorized {
		t.Errorf("anonymous GET grants = %d, want 401", status)
	}
}

// FuzzGrantsAPI: whatever query a seller sends to the grants list, and
// whatever id to retry, the answer is 200 or a contract error with its
// body, never a 500 or a panic.
func FuzzGrantsAPI(f *testing.F) {
	for _, s := range []struct{ query, id string }{
		{"?status=failed", "00000000-0000-0000-0000-000000000000"},
		{"?status=pending&limit=1", "zz"},
		{"?limit=200&cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""},
		{"?cursor=%00&limit=-1", "../../x"},
		{"?status=done&status=failed", "00000000-0000-0000-0000-00000000000g"},
	} {
		f.Add(s.query, s.id)
	}
	e := newSellerEnv(f)
	if status, body := e.install(true, "0"); status != http.StatusCreated {
		f.Fatalf("install = %d %v", status, body)
	}
	f.Fuzz(func(t *testing.T, query, id string) {
		e.t = t
		for _, target := range []string{
			"/api/discord/servers/" + guildID + "/grants" + query,
			"/api/discord/servers/" + guildID + "/grants/" + url.PathEscape(id) + "/retry",
		} {
			if _, err := url.Parse(target); err != nil || strings.ContainsAny(target, " \t\r\n#") {
				continue
			}
			method := "GET"
			if strings.HasSuffix(target, "/retry") {
				method = "POST"
			}
			req := httptest.NewRequest(method, target, nil)
			req.Header.Set("Authorization", "Bearer "+e.sellerToken)
			res, err := e.srv.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode >= 500 {
				t.Fatalf("%s %s = %d %s", method, target, res.StatusCode, b)
			}
			if res.StatusCode >= 400 && !strings.Contains(string(b), `"requestId"`) {
				t.Fatalf("%s %s = %d without the error body: %s", method, target, res.StatusCode, b)
			}
		}
	})
}
