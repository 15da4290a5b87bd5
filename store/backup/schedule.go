package backup

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Schedule says when scheduled backups run. The zero Schedule is off.
type Schedule struct {
	every time.Duration // fixed interval from start, or
	align time.Duration // at each multiple of align in UTC (hour, day)
}

// Off reports whether the schedule runs nothing.
func (s Schedule) Off() bool { return s.every == 0 && s.align == 0 }

// String is the schedule as configured.
func (s Schedule) String() string {
	switch {
	case s.align == time.Hour:
		return "@hourly"
	case s.align == 24*time.Hour:
		return "@daily"
	case s.every > 0:
		return "every " + s.every.String()
	}
	return "off"
}

// MinInterval is the shortest interval a schedule accepts: a backup is a
// full dump, and one every few seconds is a mistake, not a policy.
const MinInterval = time.Minute

// ParseSchedule reads BACKUP_SCHEDULE: "" or "off" (no scheduled backups),
// "@hourly" or "@daily" (at the top of each UTC hour or at 00:00 UTC), or
// a Go duration of at least a minute ("6h", "24h": that long after start,
// then again every interval).
func ParseSchedule(v string) (Schedule, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "off", "false", "0", "none":
		return Schedule{}, nil
	case "@hourly":
		return Schedule{align: time.Hour}, nil
	case "@daily", "@midnight":
		return Schedule{align: 24 * time.Hour}, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return Schedule{}, fmt.Errorf("BACKUP_SCHEDULE %q is not off, @hourly, @daily or a duration like 24h", v)
	}
	if d < MinInterval {
		return Schedule{}, fmt.Errorf("BACKUP_SCHEDULE %q is shorter than %s", v, MinInterval)
	}
	return Schedule{every: d}, nil
}

// Validate checks the schedule and the retention, so serve can refuse a
// bad BACKUP_SCHEDULE or BACKUP_KEEP before it starts anything.
func (c Config) Validate() error {
	sched, err := ParseSchedule(c.Schedule)
	if err != nil {
		return err
	}
	if !sched.Off() && c.Keep < 1 {
		return fmt.Errorf("BACKUP_KEEP is %d: a schedule must keep at least 1 backup", c.Keep)
	}
	return nil
}

// Next is the first run strictly after t.
func (s Schedule) Next(t time.Time) time.Time {
	switch {
	case s.align > 0:
		return t.UTC().Truncate(s.align).Add(s.align)
	case s.every > 0:
		return t.Add(s.every)
	}
	return time.Time{}
}

// RunSchedule makes a backup at each time of sched and then keeps the
// newest keep backups, until ctx is done. A failed run is logged (and
// audited) and the next one still comes; the gauge
// vectabase_backup_last_success_timestamp_seconds shows how long ago the
// last one worked.
func (s *Service) RunSchedule(ctx context.Context, sched Schedule, keep int) {
	if sched.Off() {
		return
	}
	s.log.Info().Str("schedule", sched.String()).Int("keep", keep).Str("dir", s.cfg.Dir).Msg("backup schedule started")
	for {
		next := sched.Next(s.now())
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.runScheduled(ctx, keep)
	}
}

func (s *Service) runScheduled(ctx context.Context, keep int) {
	b, err := s.Create(ctx, System, nil)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error().Str("error", err.Error()).Msg("scheduled backup failed")
		}
		return
	}
	s.log.Info().Str("backup", b.ID).Int64("dumpSize", b.DumpSize).Msg("scheduled backup done")
	deleted, err := s.Prune(ctx, System, keep)
	if err != nil {
		s.log.Error().Str("error", err.Error()).Msg("backup retention failed")
		return
	}
	if len(deleted) > 0 {
		s.log.Info().Strs("deleted", deleted).Int("keep", keep).Msg("old backups deleted")
	}
}
