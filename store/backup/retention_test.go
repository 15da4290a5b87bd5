package backup_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store/backup"
)

// TestProperty25_RetentionDeletesOnlyOldScheduledBackups claims: for any
// mix of scheduled, manual and unreadable backups (newest first, as List
// gives them) and any keep of at least 1, retention deletes exactly the
// readable scheduled backups after the newest keep of them, never a manual
// backup or an unreadable file, and leaves min(keep, scheduled) scheduled
// backups. (Issue 16's first property; rapid's default 100 iterations.)
func TestProperty25_RetentionDeletesOnlyOldScheduledBackups(t *testing.T) {
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

// TestProperty26_OneScheduledBackupPerPeriod claims: when any number of
// instances (1 to 4, started at any times, each firing a little late) run
// one schedule (@hourly, @daily or an interval of 1 minute to 2 days) and
// each firing makes a backup only when none was made since
// Schedule.PeriodStart (RunScheduled's rule, taken under its lock), then an
// aligned schedule gets exactly one backup in every period in which an
// instance fired, and an interval schedule gets backups at least 0.9 of
// the interval apart and never more than one interval (plus the lateness)
// apart. 100 iterations (rapid's default).
func TestProperty26_OneScheduledBackupPerPeriod(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		spec := rapid.SampledFrom([]string{"@hourly", "@daily", "interval"}).Draw(rt, "schedule")
		if spec == "interval" {
			spec = (time.Duration(rapid.IntRange(1, 48*60).Draw(rt, "minutes")) * time.Minute).String()
		}
		sched, err := backup.ParseSchedule(spec)
		if err != nil {
			rt.Fatalf("ParseSchedule(%q): %v", spec, err)
		}
		period := sched.Next(time.Unix(0, 0).UTC()).Sub(time.Unix(0, 0).UTC())
		aligned := spec[0] == '@'
		const late = 30 * time.Second
		origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rapid.Int64Range(0, int64(24*time.Hour)).Draw(rt, "origin")))
		horizon := origin.Add(20 * period)
		var fires []time.Time
		for i := range rapid.IntRange(1, 4).Draw(rt, "instances") {
			t := origin.Add(time.Duration(rapid.Int64Range(0, int64(2*period)).Draw(rt, fmt.Sprintf("start%d", i))))
			for {
				t = sched.Next(t).Add(time.Duration(rapid.Int64Range(0, int64(late)).Draw(rt, "late")))
				if t.After(horizon) {
					break
				}
				fires = append(fires, t)
			}
		}
		slices.SortFunc(fires, func(a, b time.Time) int { return a.Compare(b) })
		var runs []time.Time
		for _, now := range fires {
			if len(runs) > 0 && !runs[len(runs)-1].Before(sched.PeriodStart(now)) {
				continue
			}
			runs = append(runs, now)
		}
		if aligned {
			perPeriod := map[time.Time]int{}
			for _, r := range runs {
				perPeriod[sched.PeriodStart(r)]++
			}
			for _, f := range fires {
				if n := perPeriod[sched.PeriodStart(f)]; n != 1 {
					rt.Fatalf("%s: period %s has %d backups, want 1", spec, sched.PeriodStart(f), n)
				}
			}
			return
		}
		for i := 1; i < len(runs); i++ {
			gap := runs[i].Sub(runs[i-1])
			if gap < period*9/10 || gap > period+late {
				rt.Fatalf("%s: backups %s apart (at %s and %s), want between 0.9 and 1 interval", spec, gap, runs[i-1], runs[i])
			}
		}
	})
}
