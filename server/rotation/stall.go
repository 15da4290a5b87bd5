package rotation

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/vectabase/vectabase/vault/alerts"
)

// StallKey is the alert event key of a job that stopped moving at
// lastMoved: the same for every instance that sees that stall (the instant
// comes from the database), and new once the job moves and stalls again.
func StallKey(jobID string, lastMoved time.Time) string {
	return "key_rotation_stalled:" + jobID + ":" + strconv.FormatInt(lastMoved.UnixMicro(), 10)
}

// stallCheckInterval is how often WatchStalls looks: a quarter of the
// threshold, between 100 ms and a minute.
func stallCheckInterval(after time.Duration) time.Duration {
	return min(max(after/4, 100*time.Millisecond), time.Minute)
}

// WatchStalls raises an alert for every running rotation job that has not
// moved (no batch committed on any of its units, no new pass, no settle
// wait ending) for Config.StallAfter, until ctx ends. It runs in every
// `serve` instance, whether or not it runs the worker (a job no instance
// works on is the stall to catch); the alert's event key names the job
// and the instant it last moved, so the instances raise one alert per
// stall, and a job that moves and stalls again alerts again. Without an
// alerter or with StallAfter 0 it returns at once.
func (s *Service) WatchStalls(ctx context.Context) {
	after := s.cfg.StallAfter
	if after <= 0 || s.alerter == nil {
		return
	}
	t := time.NewTicker(stallCheckInterval(after))
	defer t.Stop()
	for {
		acts, err := s.rot.RunningActivity(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("looking for stalled rotations failed")
		}
		for _, a := range acts {
			if a.Idle < after {
				continue
			}
			// Raised again on every check while the stall lasts: the
			// outbox keeps one alert per key, so a raise that failed (the
			// database was down) is made good by the next check.
			idle := a.Idle.Truncate(time.Second)
			s.alert(alerts.KindRotationStalled, StallKey(a.Job.ID, a.LastMoved), fmt.Sprintf(
				"%s rotation job %s has made no progress for %s (pass %d, %d of about %d values re-encrypted, %d/%d units done); is a rotation worker running (ROTATION_WORKER_DISABLED) and are its batches failing? See the server log",
				kindName(a.Job.Kind), a.Job.ID, idle, a.Job.Pass, a.Job.Reencrypted, a.Job.PendingAtStart, a.Job.UnitsDone, a.Job.Units))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func kindName(kind string) string {
	if kind == "kek" {
		return "KEK"
	}
	return "DEK"
}
