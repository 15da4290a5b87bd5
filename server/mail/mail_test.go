package mail

import (
	"context"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSMTPURL(t *testing.T) {
	for _, c := range []struct {
		raw     string
		want    smtpSettings
		wantErr bool
	}{
		{raw: "smtp://u:p@mail.example.com:2525", want: smtpSettings{host: "mail.example.com", user: "u", pass: "p", port: 2525, tls: "starttls"}},
		{raw: "smtp://mail.example.com", want: smtpSettings{host: "mail.example.com", port: 587, tls: "starttls"}},
		{raw: "smtps://u:p%40ss@mail.example.com", want: smtpSettings{host: "mail.example.com", user: "u", pass: "p@ss", port: 465, tls: "implicit"}},
		{raw: "smtp://127.0.0.1:25?tls=none", want: smtpSettings{host: "127.0.0.1", port: 25, tls: "none"}},
		{raw: "smtp://[::1]:25?tls=opportunistic", want: smtpSettings{host: "::1", port: 25, tls: "opportunistic"}},
		{raw: "http://mail.example.com", wantErr: true},
		{raw: "smtp://", wantErr: true},
		{raw: "smtp://mail.example.com:0", wantErr: true},
		{raw: "smtp://mail.example.com:99999", wantErr: true},
		{raw: "smtp://mail.example.com?tls=maybe", wantErr: true},
		{raw: "::", wantErr: true},
	} {
		got, err := parseSMTPURL(c.raw)
		if (err != nil) != c.wantErr {
			t.Errorf("parseSMTPURL(%q) err = %v, want error %v", c.raw, err, c.wantErr)
			continue
		}
		if err == nil && got != c.want {
			t.Errorf("parseSMTPURL(%q) = %+v, want %+v", c.raw, got, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "p@ss") {
			t.Errorf("parseSMTPURL(%q) error %q shows the password", c.raw, err)
		}
	}
}

func FuzzParseSMTPURL(f *testing.F) {
	for _, s := range []string{"smtp://u:p@h:587", "smtps://h", "smtp://h?tls=none", "smtp://[::1]:25", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := parseSMTPURL(raw)
		if err != nil {
			if s.pass != "" && strings.Contains(err.Error(), s.pass) {
				t.Fatalf("error %q shows the password", err)
			}
			return
		}
		if s.host == "" || s.port < 1 || s.port > 65535 {
			t.Fatalf("parseSMTPURL(%q) = %+v: accepted without a host or port", raw, s)
		}
		switch s.tls {
		case "starttls", "implicit", "opportunistic", "none":
		default:
			t.Fatalf("parseSMTPURL(%q): tls %q", raw, s.tls)
		}
	})
}

func TestConfigStringRedactsThePassword(t *testing.T) {
	c := Config{SMTPURL: "smtp://user:hunter2-secret@mail.example.com:587", From: "x@example.com"}
	for _, s := range []string{c.String(), c.GoString()} {
		if strings.Contains(s, "hunter2-secret") {
			t.Errorf("%s shows the SMTP password", s)
		}
	}
}

func TestTemplatesRenderAndOverride(t *testing.T) {
	def, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"Email": "a@example.com", "NewEmail": "b@example.com", "Link": "https://app.example.com/x?token=T", "ValidFor": "1 hour"}
	for _, n := range Names {
		m, err := def.Render(n, "a@example.com", data)
		if err != nil {
			t.Fatalf("Render(%s) err = %v, want nil", n, err)
		}
		if m.Subject == "" || m.Text == "" || m.HTML == "" {
			t.Errorf("Render(%s) = %+v: empty part", n, m)
		}
	}
	// HTML escapes the data.
	m, err := def.Render(TemplateEmailChangeNotice, "a@example.com", map[string]any{"Email": "<b>x</b>", "NewEmail": "y", "Link": "", "ValidFor": ""})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<b>x</b>") {
		t.Errorf("HTML part does not escape the data: %s", m.HTML)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "password_reset.subject.txt"), []byte("Ihr Passwort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	over, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err = over.Render(TemplatePasswordReset, "a@example.com", data)
	if err != nil || m.Subject != "Ihr Passwort" || !strings.Contains(m.Text, "https://app.example.com/x?token=T") {
		t.Errorf("overridden subject: %+v, %v", m, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "email_confirm.html"), []byte("{{.Broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "email_confirm.html") {
		t.Errorf("LoadTemplates with a broken override err = %v, want one naming the file", err)
	}
}

func TestDirWritesAnEMLFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	var told string
	d := &Dir{Path: dir, OnWrite: func(path string, m Message) { told = path }}
	if err := d.Send(context.Background(), "Vectabase <no-reply@example.com>", Message{To: "a@example.com", Subject: "Hello", Text: "plain", HTML: "<p>html</p>"}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || told != files[0] {
		t.Fatalf("files %v, told %q: want one .eml, told", files, told)
	}
	st, _ := os.Stat(files[0])
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	f, _ := os.Open(files[0])
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatalf("not a mail: %v", err)
	}
	if msg.Header.Get("Subject") != "Hello" || !strings.Contains(msg.Header.Get("To"), "a@example.com") {
		t.Errorf("headers %v", msg.Header)
	}
}
