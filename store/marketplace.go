package store

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vectabase/vectabase/keyring"
)

// Marketplace is the repository of the marketplace and developer API:
// stores, products, sales, whitelist systems and users, developer API keys,
// their rate-limit counters and request logs. Sensitive columns (Stripe ids,
// download URLs, license keys, hardware ids) pass through the keyring here
// and nowhere else in the area.
type Marketplace struct {
	db   *DB
	kr   *keyring.Keyring
	uses *keyUseBatcher
}

// NewMarketplace returns the marketplace repository on db, encrypting with kr.
func NewMarketplace(db *DB, kr *keyring.Keyring) *Marketplace {
	m := &Marketplace{db: db, kr: kr}
	m.uses = newKeyUseBatcher(m.useAPIKeyBatch)
	return m
}

// ErrInUse is returned when a row cannot be deleted because other rows
// (sales, for stores and products) still refer to it.
var ErrInUse = errors.New("store: still referenced")

// Cursor is a position in a list ordered by (created_at DESC, id DESC): the
// last row of the previous page. Lists are keyset-paged, so a page costs the
// same however deep it is and rows inserted meanwhile do not shift pages.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// Page asks for at most Limit rows after After (nil: from the start).
type Page struct {
	Limit int
	After *Cursor
}

// Encode makes the cursor opaque for clients: base64url of the microsecond
// timestamp and the id.
func (c Cursor) Encode() string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.CreatedAt.UnixMicro()))
	copy(b[8:], c.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// DecodeCursor parses a cursor made by Encode. Anything else is an error.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 24 {
		return Cursor{}, errors.New("store: malformed cursor")
	}
	var c Cursor
	c.CreatedAt = time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))).UTC()
	copy(c.ID[:], b[8:])
	return c, nil
}

// pageArgs returns the keyset bounds for a page: with no cursor, a bound
// past every row ('infinity' sorts after any timestamp).
func pageArgs(p Page) (any, uuid.UUID) {
	if p.After == nil {
		return "infinity", uuid.Max
	}
	return p.After.CreatedAt, p.After.ID
}

// pageClause is the keyset condition and order shared by every list; $k and
// $k+1 are the bounds from pageArgs and $k+2 is the limit.
func pageClause(alias string, k int) string {
	a := alias + "."
	return " AND (" + a + "created_at, " + a + "id) < ($" + strconv.Itoa(k) + "::timestamptz, $" + strconv.Itoa(k+1) + "::uuid)" +
		" ORDER BY " + a + "created_at DESC, " + a + "id DESC LIMIT $" + strconv.Itoa(k+2)
}

// trimPage cuts the extra row a list fetched to learn whether another page
// exists, and returns the cursor of the next page (nil at the end).
func trimPage[T any](rows []T, limit int, pos func(T) Cursor) ([]T, *Cursor) {
	if len(rows) <= limit {
		return rows, nil
	}
	rows = rows[:limit]
	c := pos(rows[len(rows)-1])
	return rows, &c
}

// isForeignKeyViolation reports a delete refused because rows still refer
// to the row.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// maskTail shows only the last four characters of an identifier, so an
// owner can tell which Stripe account is linked without the id being
// disclosed.
func maskTail(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	prefix := ""
	for i := 0; i < len(s); i++ {
		if s[i] == '_' {
			prefix = s[:i+1]
			break
		}
	}
	return prefix + "****" + s[len(s)-4:]
}
