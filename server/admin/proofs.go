package admin

import (
	"context"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/vault/audit"
)

// Proofs is what the proof routes need of vault/audit.
type Proofs interface {
	audit.Recorder
	InclusionProof(ctx context.Context, rowID int64, size uint64) (audit.Proof, error)
	ConsistencyProof(ctx context.Context, from, to uint64) (audit.Proof, error)
}

var _ Proofs = (*audit.Prover)(nil)

type proofHandler struct{ p Proofs }

// ProofRoutes is the route table of the audit log's proofs, in the JSON
// format `vectabase audit check-proof` checks:
//
//   - GET /api/audit/proof/inclusion?row=ID[&size=N]: admin only, and
//     audited as audit.prove, because the proof carries the row itself
//     (who, what, from which address). Against the stored checkpoint of N
//     rows, or a checkpoint signed now when size is left out.
//   - GET /api/audit/proof/consistency?from=A[&to=B]: public, like the
//     checkpoint: it holds only hashes and signed checkpoints, and lets a
//     witness holding a checkpoint of A rows check that the log of B rows
//     (a stored checkpoint; the newest when to is left out) extends it.
func ProofRoutes(p Proofs, requireAdmin fiber.Handler) []server.Route {
	h := &proofHandler{p: p}
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/audit/proof/inclusion", Auth: requireAdmin, BodyLimit: 4 << 10, Timeout: time.Minute, Handler: h.inclusion},
		{Method: fiber.MethodGet, Path: "/api/audit/proof/consistency", Auth: nil, BodyLimit: 4 << 10, Timeout: time.Minute, Handler: h.consistency},
	}
}

// queryUint reads query parameter key as a positive integer of at most
// 2^62; absent is 0 unless required.
func queryUint(c *fiber.Ctx, key string, required bool) (uint64, error) {
	s := c.Query(key)
	if s == "" {
		if required {
			return 0, vectabase.Errorf(vectabase.EVALIDATION, "%s: required", key)
		}
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, vectabase.Errorf(vectabase.EVALIDATION, "%s: must be a positive integer", key)
	}
	return n, nil
}

func (h *proofHandler) inclusion(c *fiber.Ctx) error {
	row, err := queryUint(c, "row", true)
	if err != nil {
		return err
	}
	size, err := queryUint(c, "size", false)
	if err != nil {
		return err
	}
	p, perr := h.p.InclusionProof(c.UserContext(), int64(row), size)
	a := server.ActorOf(c)
	result, details := vectabase.ResultSuccess, map[string]any{"row": row, "size": p.TreeSize}
	if perr != nil {
		result, details = vectabase.ResultFailure, map[string]any{"row": row, "size": size, "error": vectabase.ErrorCode(perr)}
	}
	if err := h.p.Record(c.UserContext(), vectabase.AuditEvent{
		ActorType: a.Type, ActorID: a.ID, Action: "audit.prove", ResourceType: "audit_log",
		ResourceID: strconv.FormatUint(row, 10), Result: result, IP: server.ClientIP(c),
		RequestID: server.RequestID(c), Details: details,
	}); err != nil {
		return vectabase.WrapError(vectabase.EUNAVAILABLE, "the audit trail cannot be written, so the request was refused", err)
	}
	if perr != nil {
		return perr
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(p)
}

func (h *proofHandler) consistency(c *fiber.Ctx) error {
	from, err := queryUint(c, "from", true)
	if err != nil {
		return err
	}
	to, err := queryUint(c, "to", false)
	if err != nil {
		return err
	}
	if to != 0 && from > to {
		return vectabase.Errorf(vectabase.EVALIDATION, "from: must not be past to")
	}
	p, err := h.p.ConsistencyProof(c.UserContext(), from, to)
	if err != nil {
		return err
	}
	return c.JSON(p)
}
