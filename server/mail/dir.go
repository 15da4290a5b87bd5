package mail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Dir "sends" by writing each mail as an .eml file (RFC 5322, what a mail
// client opens) into Path: vectabase dev needs no SMTP server. OnWrite, when
// set, is told each file (dev logs the mail's link).
type Dir struct {
	Path    string
	OnWrite func(path string, m Message)
}

var _ Sender = (*Dir)(nil)

// Send writes m to a new file Path/<time>-<random>.eml (mode 0600: mails
// hold sign-in links).
func (d *Dir) Send(_ context.Context, from string, m Message) error {
	msg, err := build(from, m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(d.Path, time.Now().UTC().Format("20060102T150405.000000000")+"-"+hex.EncodeToString(rnd[:])+".eml")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if _, err := msg.WriteTo(f); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("mail: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("mail: write %s: %w", name, err)
	}
	if d.OnWrite != nil {
		d.OnWrite(name, m)
	}
	return nil
}
