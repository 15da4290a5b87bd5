//go:build cgo

package pkcs11_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vectabase/vectabase/keyring/pkcs11"
)

// softhsm is the SoftHSM2 set up by TestMain: a token directory in a
// temporary folder (SOFTHSM2_CONF), two tokens, and their keys.
var softhsm struct {
	module  string
	pinFile string
	skip    string // why the tests skip, when SoftHSM2 is not installed
}

// Module candidates: Debian/Ubuntu, Fedora/RHEL, Homebrew.
var softhsmModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

const (
	tokenLabel = "vectabase"
	downToken  = "vectabase-down"
	userPIN    = "4711-test-pin"
)

func cfg(token, key string) pkcs11.Config {
	return pkcs11.Config{Module: softhsm.module, TokenLabel: token, PINFile: softhsm.pinFile, KeyLabel: key}
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := setUp(dir); err != nil {
		softhsm.skip = err.Error()
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func setUp(dir string) error {
	for _, p := range softhsmModules {
		if _, err := os.Stat(p); err == nil {
			softhsm.module = p
			break
		}
	}
	util, err := exec.LookPath("softhsm2-util")
	if softhsm.module == "" || err != nil {
		return fmt.Errorf("SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		return err
	}
	// The module reads SOFTHSM2_CONF when loaded; TestMain runs before any
	// test, so setting it here races nothing.
	os.Setenv("SOFTHSM2_CONF", conf)
	softhsm.pinFile = filepath.Join(dir, "pin")
	if err := os.WriteFile(softhsm.pinFile, []byte(userPIN+"\n"), 0o600); err != nil {
		return err
	}
	for _, label := range []string{tokenLabel, downToken} {
		out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", userPIN, "--so-pin", "so-"+userPIN).CombinedOutput()
		if err != nil {
			return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	for _, c := range []pkcs11.Config{cfg(tokenLabel, "kek"), cfg(tokenLabel, "other"), cfg(downToken, "kek")} {
		if _, err := pkcs11.GenerateKey(c); err != nil {
			return err
		}
	}
	return nil
}

func need(t *testing.T) {
	t.Helper()
	if softhsm.skip != "" {
		t.Skip(softhsm.skip)
	}
}
