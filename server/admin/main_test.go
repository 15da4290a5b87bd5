package admin_test

import (
	"testing"

	"github.com/vectabase/vectabase/store/pgtest"
)

// TestMain is the package's one: every admin test file shares it.
func TestMain(m *testing.M) { pgtest.Main(m) }
