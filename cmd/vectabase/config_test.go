package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Console logs carry colour codes only when they go to a terminal: in a
// buffer, a file or a pipe they are plain text.
func TestConsoleLogColoursOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	console := LogConfig{Level: "info", Format: "console"}
	var buf bytes.Buffer
	log, err := newLogger(console, "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("k", "v").Msg("hello")
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flog, _ := newLogger(console, "json", f)
	flog.Info().Str("k", "v").Msg("hello")
	raw, _ := os.ReadFile(f.Name())
	for what, out := range map[string]string{"a buffer": buf.String(), "a file": string(raw)} {
		if !strings.Contains(out, "hello") || strings.Contains(out, "\x1b[") {
			t.Errorf("console log to %s = %q, want the line without escape codes", what, out)
		}
	}

	master, slave, err := openPTY()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 4096)
		n, _ := master.Read(b)
		got <- string(b[:n])
	}()
	tlog, _ := newLogger(console, "json", slave)
	tlog.Info().Str("k", "v").Msg("hello")
	select {
	case out := <-got:
		if !strings.Contains(out, "\x1b[") {
			t.Errorf("console log to a terminal = %q, want colours", out)
		}
	case <-time.After(time.Minute):
		t.Fatal("nothing arrived on the terminal")
	}
}

// openPTY opens a pseudo-terminal pair.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}
