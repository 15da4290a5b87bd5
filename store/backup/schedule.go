package backup

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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

// PeriodStart is the start of the schedule period that holds t: the top of
// the hour or day for aligned schedules; for an interval, t less nine
// tenths of the interval (instances started at different times fire at
// different times; a backup that recent already covers this run).
func (s Schedule) PeriodStart(t time.Time) time.Time {
	switch {
	case s.align > 0:
		return t.UTC().Truncate(s.align)
	case s.every > 0:
		return t.Add(-s.every * 9 / 10)
	}
	return time.Time{}
}

// RunSchedule makes a backup at each time of sched and then keeps the
// newest keep scheduled backups, until ctx is done. Every instance runs
// it; one backup is made per period however many run (see RunScheduled).
// A failed run is logged (and audited) and the next one still comes; the
// gauge vectabase_backup_last_success_timestamp_seconds shows how long ago
// the last one worked.
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
		if _, err := s.RunScheduled(ctx, sched, keep); err != nil && ctx.Err() == nil {
			s.log.Error().Str("error", err.Error()).Msg("scheduled backup failed")
		}
	}
}

// scheduleLock is the session advisory lock the instance making this
// period's backup holds, on the direct connection (PgBouncer's
// transaction mode cannot carry a session lock).
const scheduleLock = "vectabase.backup.schedule"

// RunScheduled is one scheduled run: the instance that gets the schedule
// lock, and finds no scheduled backup made since the period began
// (backup_schedule_runs), makes one, records it and prunes to keep; every
// other instance returns "" at once. It returns the new backup's id.
func (s *Service) RunScheduled(ctx context.Context, sched Schedule, keep int) (string, error) {
	c, err := pgx.Connect(ctx, s.db.pgxURL())
	if err != nil {
		return "", unreachable(err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var leader bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", scheduleLock).Scan(&leader); err != nil {
		return "", fmt.Errorf("backup: schedule lock: %w", flatten(err))
	}
	if !leader {
		s.log.Debug().Msg("scheduled backup: another instance is making it")
		return "", nil
	}
	// Closing the connection releases the lock too; unlock first so a
	// pooled-looking connection never keeps it.
	defer func() {
		_, _ = c.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", scheduleLock)
	}()
	since := sched.PeriodStart(s.now())
	var done bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM backup_schedule_runs WHERE started_at >= $1)", since).Scan(&done); err != nil {
		return "", fmt.Errorf("backup: read the schedule's runs: %w", flatten(err))
	}
	if done {
		s.log.Debug().Time("since", since).Msg("scheduled backup: this period's backup exists")
		return "", nil
	}
	b, err := s.createKind(ctx, System, KindScheduled, nil)
	if err != nil {
		return "", err
	}
	instance, _ := os.Hostname()
	instance = fmt.Sprintf("%s/%d", instance, os.Getpid())
	if _, err := c.Exec(ctx, "INSERT INTO backup_schedule_runs (backup_id, started_at, instance) VALUES ($1, $2, $3)", b.ID, b.CreatedAt, instance); err != nil {
		return b.ID, fmt.Errorf("backup: record the scheduled run: %w", flatten(err))
	}
	s.log.Info().Str("backup", b.ID).Int64("dumpSize", b.DumpSize).Msg("scheduled backup done")
	deleted, err := s.Prune(ctx, System, keep)
	if err != nil {
		return b.ID, fmt.Errorf("backup retention: %w", err)
	}
	if len(deleted) > 0 {
		s.log.Info().Strs("deleted", deleted).Int("keep", keep).Msg("old scheduled backups deleted")
	}
	return b.ID, nil
}
