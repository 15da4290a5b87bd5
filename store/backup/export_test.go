package backup

import (
	"context"
	"io"
	"time"

	"github.com/tink-crypto/tink-go/v2/streamingaead"
)

// UseSmallSegments makes new backups use 4 KB segments, so a small test
// database spans many and a failure can come midway through a restore.
func UseSmallSegments(s *Service) { s.tmpl = streamingaead.AES256GCMHKDF4KBKeyTemplate() }

// SetClock replaces the service's clock.
func SetClock(s *Service, now func() time.Time) { s.now = now }

// Authenticate checks backup id the way verify and restore do before
// touching a database: header, key, manifest tag, every body segment and
// the checksum.
func Authenticate(ctx context.Context, s *Service, id string) error {
	b, key, err := s.open(ctx, id)
	if err != nil {
		return err
	}
	defer b.close()
	r, err := key.reader(b)
	if err != nil {
		return fileError(id, err)
	}
	m := newMeter("verify", b.manifest.DumpSize, nil)
	if _, err := io.Copy(m, r); err != nil {
		return fileError(id, err)
	}
	return checkSum(b, m)
}

// CreateScheduled makes a backup as the schedule does (kind scheduled),
// without the schedule's lock and period check.
func CreateScheduled(ctx context.Context, s *Service) (Backup, error) {
	return s.createKind(ctx, System, KindScheduled, nil)
}

// EveryFor is a schedule with an interval shorter than ParseSchedule
// allows, for tests of the loop.
func EveryFor(d time.Duration) Schedule { return Schedule{every: d} }

// PruneCandidates is what retention would delete from list.
func PruneCandidates(list []Backup, keep int) []string { return pruneCandidates(list, keep) }
