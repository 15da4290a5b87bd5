package backup_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store/backup"
)

// TestProperty1601_RetentionDeletesOnlyOldScheduledBackups claims: for any
// mix of scheduled, manual and unreadable backups (newest first, as List
// gives them) and any keep of at least 1, retention deletes exactly the
// readable scheduled backups after the newest keep of them, never a manual
// backup or an unreadable file, and leaves min(keep, scheduled) scheduled
// backups. (Issue 16's first property; rapid's default 100 iterations.)
func TestProperty1601_RetentionDeletesOnlyOldScheduledBackups(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 40).Draw(rt, "n")
		keep := rapid.IntRange(1, 10).Draw(rt, "keep")
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var list []backup.Backup
		for i := 0; i < n; i++ {
			b := backup.Backup{Manifest: backup.Manifest{
				ID:        fmt.Sprintf("%s-%08x", start.Add(-time.Duration(i)*time.Hour).Format("20060102T150405Z"), i),
				CreatedAt: start.Add(-time.Duration(i) * time.Hour),
				Kind:      rapid.SampledFrom([]string{backup.KindScheduled, backup.KindManual}).Draw(rt, "kind"),
			}}
			if rapid.IntRange(0, 9).Draw(rt, "damaged") == 0 {
				b.Problem = "backup file is corrupt or was altered"
			}
			list = append(list, b)
		}
		got := backup.PruneCandidates(list, keep)
		var scheduled []string
		for _, b := range list {
			if b.Problem == "" && b.Kind == backup.KindScheduled {
				scheduled = append(scheduled, b.ID)
			}
		}
		var want []string
		if len(scheduled) > keep {
			want = scheduled[keep:]
		}
		if !slices.Equal(got, want) {
			rt.Fatalf("PruneCandidates(keep %d) = %v, want %v", keep, got, want)
		}
		for _, b := range list {
			if slices.Contains(got, b.ID) && (b.Kind != backup.KindScheduled || b.Problem != "") {
				rt.Fatalf("retention deletes %s (kind %s, problem %q)", b.ID, b.Kind, b.Problem)
			}
		}
		if left := len(scheduled) - len(got); left != min(keep, len(scheduled)) {
			rt.Fatalf("%d scheduled backups left, want %d", left, min(keep, len(scheduled)))
		}
	})
}
