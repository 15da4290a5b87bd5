package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/vault/audit"
)

// fakeProofs answers every proof request; sizes past 1000 are unknown.
type fakeProofs struct{}

func (fakeProofs) Record(context.Context, vectabase.AuditEvent) error { return nil }

func (fakeProofs) InclusionProof(_ context.Context, row int64, size uint64) (audit.Proof, error) {
	if row <= 0 || size > 1000 {
		return audit.Proof{}, vectabase.Errorf(vectabase.ENOTFOUND, "no such row or checkpoint")
	}
	return audit.Proof{Format: audit.InclusionFormat, TreeSize: size}, nil
}

func (fakeProofs) ConsistencyProof(_ context.Context, from, to uint64) (audit.Proof, error) {
	if from == 0 || to > 1000 {
		return audit.Proof{}, vectabase.Errorf(vectabase.ENOTFOUND, "no checkpoint")
	}
	return audit.Proof{Format: audit.ConsistencyFormat, FromSize: from, TreeSize: to}, nil
}

// FuzzProofRoutes: whatever the query string, the proof routes answer 200
// with a proof or a contract error body (400/404), never a panic or a 500.
func FuzzProofRoutes(f *testing.F) {
	for _, s := range []string{"row=1", "row=1&size=5", "row=-1", "row=1&row=2", "from=5&to=3", "from=1",
		"from=18446744073709551616", "row=%00", "size=1&row=1e3", "from=+5", "row=0x10"} {
		f.Add(true, s)
		f.Add(false, s)
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.ProofRoutes(fakeProofs{}, func(c *fiber.Ctx) error { return c.Next() }))
	f.Fuzz(func(t *testing.T, inclusion bool, query string) {
		path := "/api/audit/proof/consistency"
		if inclusion {
			path = "/api/audit/proof/inclusion"
		}
		for _, c := range []byte(query) {
			if c <= ' ' || c >= 0x7f || c == '#' {
				t.Skip("not a query a client can send on a request line")
			}
		}
		u := &url.URL{Path: path, RawQuery: query}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		resp, err := srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case 200:
			var p audit.Proof
			if err := json.Unmarshal(b, &p); err != nil || p.Format == "" {
				t.Fatalf("200 with %q", b)
			}
		case 400, 404:
			var e struct{ Error, Message, RequestID string }
			if err := json.Unmarshal(b, &e); err != nil || e.Error == "" || e.RequestID == "" {
				t.Fatalf("%d with %q, want the contract's error body", resp.StatusCode, b)
			}
		default:
			t.Fatalf("GET %s?%s = %d %s", path, query, resp.StatusCode, b)
		}
	})
}
