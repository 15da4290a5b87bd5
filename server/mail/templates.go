package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
)

// The mails the server sends. Each has NAME.subject.txt and NAME.txt
// (text/template) and NAME.html (html/template, which escapes the data).
const (
	TemplatePasswordReset     = "password_reset"
	TemplateEmailConfirm      = "email_confirm"
	TemplateEmailChange       = "email_change"
	TemplateEmailChangeNotice = "email_change_notice"
	TemplatePasswordChanged   = "password_changed"
)

// Names lists every template, for checks and overrides.
var Names = []string{TemplatePasswordReset, TemplateEmailConfirm, TemplateEmailChange, TemplateEmailChangeNotice, TemplatePasswordChanged}

//go:embed templates
var embedded embed.FS

type tmpl struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// Templates renders the mails, from the embedded defaults or, file by file,
// from an override directory.
type Templates struct{ byName map[string]tmpl }

// LoadTemplates parses every template, taking each file from dir when it
// exists there ("" : the embedded ones only). A template that does not
// parse is an error naming its file.
func LoadTemplates(dir string) (*Templates, error) {
	t := &Templates{byName: map[string]tmpl{}}
	read := func(name string) (string, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return string(b), nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("mail: template %s: %w", name, err)
			}
		}
		b, err := embedded.ReadFile("templates/" + name)
		return string(b), err
	}
	for _, n := range Names {
		var x tmpl
		src, err := read(n + ".subject.txt")
		if err != nil {
			return nil, err
		}
		if x.subject, err = texttemplate.New(n + ".subject.txt").Option("missingkey=error").Parse(strings.TrimSpace(src)); err != nil {
			return nil, fmt.Errorf("mail: template %w", err)
		}
		if src, err = read(n + ".txt"); err != nil {
			return nil, err
		}
		if x.text, err = texttemplate.New(n + ".txt").Option("missingkey=error").Parse(src); err != nil {
			return nil, fmt.Errorf("mail: template %w", err)
		}
		if src, err = read(n + ".html"); err != nil {
			return nil, err
		}
		if x.html, err = htmltemplate.New(n + ".html").Option("missingkey=error").Parse(src); err != nil {
			return nil, fmt.Errorf("mail: template %w", err)
		}
		t.byName[n] = x
	}
	return t, nil
}

// Render makes the message name for to from data (a map or struct the
// templates read).
func (t *Templates) Render(name, to string, data any) (Message, error) {
	x, ok := t.byName[name]
	if !ok {
		return Message{}, fmt.Errorf("mail: no template %q", name)
	}
	var subj, text, html bytes.Buffer
	if err := x.subject.Execute(&subj, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", name, err)
	}
	if err := x.text.Execute(&text, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", name, err)
	}
	if err := x.html.Execute(&html, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", name, err)
	}
	return Message{To: to, Subject: strings.TrimSpace(subj.String()), Text: text.String(), HTML: html.String()}, nil
}
