package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// discordCommandsDouble stands in for Discord's bulk-overwrite endpoint
// (PUT /applications/{id}/commands), answering status and echoing the
// commands as Discord does.
type discordCommandsDouble struct {
	*httptest.Server
	mu                  sync.Mutex
	method, path, auth  string
	contentType         string
	body                []byte
	status, requestSeen int
}

func newDiscordCommandsDouble(t *testing.T, status int) *discordCommandsDouble {
	d := &discordCommandsDouble{status: status}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.method, d.path, d.auth, d.contentType, d.body = r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b
		d.requestSeen++
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(d.status)
		if d.status == http.StatusOK {
			_, _ = w.Write(b)
		} else {
			_, _ = w.Write([]byte(`{"message": "401: Unauthorized", "code": 0}`))
		}
	}))
	t.Cleanup(d.Close)
	return d
}

func TestDiscordRegisterCommands(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	d := newDiscordCommandsDouble(t, http.StatusOK)
	env := baseEnv("DISCORD_CLIENT_ID=500000000000000001", "DISCORD_BOT_TOKEN=bot-token-from-env", "DISCORD_API_BASE="+d.URL)
	r := run(t, dir, env, "discord", "register-commands", "--json")
	if r.code != 0 {
		t.Fatalf("register-commands: exit %d, stderr %q", r.code, r.stderr)
	}
	if d.method != "PUT" || d.path != "/applications/500000000000000001/commands" || d.auth != "Bot bot-token-from-env" || d.contentType != "application/json" {
		t.Fatalf("request = %s %s auth %q type %q", d.method, d.path, d.auth, d.contentType)
	}
	var cmds []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Type        int    `json:"type"`
		Options     []struct {
			Type    int    `json:"type"`
			Name    string `json:"name"`
			Options []struct {
				Type     int    `json:"type"`
				Name     string `json:"name"`
				Required bool   `json:"required"`
			} `json:"options"`
		} `json:"options"`
	}
	if err := json.Unmarshal(d.body, &cmds); err != nil {
		t.Fatalf("body %s: %v", d.body, err)
	}
	if len(cmds) != 2 || cmds[0].Name != "whitelist" || cmds[1].Name != "redeem" || cmds[0].Type != 1 {
		t.Fatalf("commands = %s", d.body)
	}
	var subs []string
	for _, o := range cmds[0].Options {
		subs = append(subs, o.Name)
		if o.Type != 1 || len(o.Options) == 0 || o.Options[0].Name != "user" || o.Options[0].Type != 6 || !o.Options[0].Required {
			t.Errorf("sub-command %s = %+v, want a sub-command with a required user option", o.Name, o)
		}
	}
	if strings.Join(subs, ",") != "add,remove,check" {
		t.Errorf("whitelist sub-commands = %v", subs)
	}
	var out struct {
		ApplicationID string   `json:"applicationId"`
		Commands      []string `json:"commands"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.ApplicationID != "500000000000000001" || len(out.Commands) != 2 {
		t.Errorf("--json output %q", r.stdout)
	}

	// Discord refuses: exit 1, one line, no token.
	bad := newDiscordCommandsDouble(t, http.StatusUnauthorized)
	env = baseEnv("DISCORD_CLIENT_ID=500000000000000001", "DISCORD_BOT_TOKEN=bot-token-from-env", "DISCORD_API_BASE="+bad.URL)
	r = run(t, dir, env, "discord", "register-commands")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "401") || strings.Contains(r.stderr, "bot-token-from-env") {
		t.Errorf("refused: exit %d, stderr %q; want exit 1, one line naming HTTP 401, no token", r.code, r.stderr)
	}

	if r := run(t, dir, env, "discord", "register-commands", "extra"); r.code != 2 {
		t.Errorf("extra argument: exit %d, want 2", r.code)
	}
	if r := run(t, dir, env, "discord", "register-commands", "-h"); r.code != 0 || !strings.Contains(r.stdout, "register-commands") {
		t.Errorf("-h: exit %d", r.code)
	}
}

// TestDiscordRegisterCommandsFromVault reads the bot token from the secrets
// vault when the environment has none.
func TestDiscordRegisterCommandsFromVault(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	d := newDiscordCommandsDouble(t, http.StatusOK)
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key, "DISCORD_CLIENT_ID=500000000000000002", "DISCORD_API_BASE="+d.URL)

	r := run(t, dir, env, "discord", "register-commands")
	if r.code != 1 || !strings.Contains(r.stderr, "DISCORD_BOT_TOKEN") {
		t.Fatalf("no token anywhere: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runStdin(t, dir, env, "bot-token-from-vault\n", "secrets", "put", "discord_bot_token"); r.code != 0 {
		t.Fatalf("secrets put: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, dir, env, "discord", "register-commands")
	if r.code != 0 {
		t.Fatalf("register-commands: exit %d, stderr %q", r.code, r.stderr)
	}
	if d.auth != "Bot bot-token-from-vault" || d.path != "/applications/500000000000000002/commands" {
		t.Fatalf("request %s auth %q", d.path, d.auth)
	}
}
