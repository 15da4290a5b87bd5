// Package localkms runs local-kms (github.com/nsmithuk/local-kms), an AWS
// KMS double, for tests: the pinned version is built once per machine into
// the user cache (see internal/pinnedbin) and started on a free loopback
// port with a seed file creating two symmetric keys.
package localkms

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/vectabase/vectabase/internal/pinnedbin"
)

// Tool is the pinned local-kms (it has no tagged releases; this is the
// commit of 2026-02-28).
var Tool = pinnedbin.Tool{
	Module:  "github.com/nsmithuk/local-kms",
	Version: "v0.0.0-20260228092603-2a5e92d09ab6",
	Name:    "local-kms",
}

// The seeded keys: KeyA (alias/vectabase) and KeyB (alias/other).
const (
	KeyA   = "bc436485-5092-42b8-92a3-0aa8b93536dc"
	KeyB   = "49c5492b-b1bc-42a8-9a5c-b2015e810c1c"
	Region = "eu-west-2"
)

const seed = `Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: ` + KeyA + `
        BackingKeys:
          - 34743777217A25432A46294A404E635266556A586E3272357538782F413F4428
      - Metadata:
          KeyId: ` + KeyB + `
        BackingKeys:
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
Aliases:
  - AliasName: alias/vectabase
    TargetKeyId: ` + KeyA + `
  - AliasName: alias/other
    TargetKeyId: ` + KeyB + `
`

// Server is a running local-kms.
type Server struct {
	// URL is the endpoint, for AWS_ENDPOINT_URL_KMS.
	URL string
	cmd *exec.Cmd
}

// Start builds (once per machine) and starts local-kms with its data in
// dir, and returns once it answers. Tests skip when it cannot be built.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Tool.Build()
	if err != nil {
		t.Skipf("local-kms is unavailable: %v", err)
	}
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedPath, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // a free port can be taken between the probe and the start
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "KMS_SEED_PATH="+seedPath,
			"KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_REGION="+Region, "KMS_ACCOUNT_ID=111122223333")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start local-kms: %v", err)
		}
		s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
		if lastErr = s.waitReady(15 * time.Second); lastErr == nil {
			t.Cleanup(s.Close)
			return s
		}
		s.Close()
	}
	t.Fatalf("local-kms did not start: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	c := http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := c.Get(s.URL); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer at %s within %v", s.URL, d)
}

// Client returns a KMS client for the server with static test credentials.
func (s *Server) Client() *kms.Client {
	return ClientFor(s.URL)
}

// ClientFor returns a KMS client for the endpoint url with static test
// credentials and few retries, so a stopped server fails fast.
func ClientFor(url string) *kms.Client {
	return kms.New(kms.Options{
		Region:           Region,
		BaseEndpoint:     aws.String(url),
		Credentials:      aws.NewCredentialsCache(staticCreds{}),
		RetryMaxAttempts: 1,
	})
}

type staticCreds struct{}

func (staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "test", Source: "localkms"}, nil
}

// Close stops the server.
func (s *Server) Close() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
