package vectabase_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vectabase/vectabase"
)

// An audit row that cannot be written because the writer is saturated is a
// 503 the client may retry, not a 500; any other failure stays INTERNAL
// with no detail.
func TestWrapInternalKeepsUnavailable(t *testing.T) {
	busy := vectabase.WrapError(vectabase.EUNAVAILABLE, "the audit trail is overloaded; try again shortly", errors.New("queue full"))
	got := vectabase.WrapInternal(fmt.Errorf("auth: audit auth.register: %w", busy))
	if got.Code != vectabase.EUNAVAILABLE || got.Message != "the audit trail is overloaded; try again shortly" {
		t.Errorf("WrapInternal(saturated) = %s %q, want UNAVAILABLE with its message", got.Code, got.Message)
	}
	if !errors.Is(got, busy) {
		t.Error("WrapInternal dropped the cause")
	}
	other := vectabase.WrapInternal(fmt.Errorf("auth: audit: %w", errors.New("connection reset: secret detail")))
	if other.Code != vectabase.EINTERNAL || other.Message != "internal error" {
		t.Errorf("WrapInternal(other) = %s %q, want INTERNAL %q", other.Code, other.Message, "internal error")
	}
}
