package marketplace

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Page sizes of every list.
const (
	defaultLimit = 50
	maxLimit     = 200
)

// invalid is a VALIDATION_FAILED error naming the field. Messages never
// repeat the value: it may be a secret sent in the wrong place.
func invalid(field, msg string) error {
	return vectabase.Errorf(vectabase.EVALIDATION, "%s: %s", field, msg)
}

// pageOf reads ?limit and ?cursor.
func pageOf(c *fiber.Ctx) (store.Page, error) {
	p := store.Page{Limit: defaultLimit}
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxLimit {
			return p, invalid("limit", "must be an integer from 1 to 200")
		}
		p.Limit = n
	}
	if raw := c.Query("cursor"); raw != "" {
		cur, err := store.DecodeCursor(raw)
		if err != nil {
			return p, invalid("cursor", "is not a cursor this API returned")
		}
		p.After = &cur
	}
	return p, nil
}

// list is the body of every list response.
type list[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

func listOf[S, T any](rows []S, next *store.Cursor, conv func(S) T) list[T] {
	out := list[T]{Items: make([]T, 0, len(rows))}
	for _, r := range rows {
		out.Items = append(out.Items, conv(r))
	}
	if next != nil {
		s := next.Encode()
		out.NextCursor = &s
	}
	return out
}

// idParam reads a path parameter that must be a UUID. Anything else is 400
// before any query runs.
func idParam(c *fiber.Ctx, name string) (string, error) {
	u, err := uuid.Parse(c.Params(name))
	if err != nil {
		return "", invalid(name, "must be a UUID")
	}
	return u.String(), nil
}

func parseUUID(field, s string) (string, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", invalid(field, "must be a UUID")
	}
	return u.String(), nil
}

func checkText(field string, s *string, minLen, maxLen int) error {
	if s == nil {
		return nil
	}
	*s = strings.TrimSpace(*s)
	if !utf8.ValidString(*s) || strings.ContainsRune(*s, 0) {
		return invalid(field, "must be valid UTF-8 text")
	}
	n := utf8.RuneCountInString(*s)
	if n < minLen {
		if minLen == 1 {
			return invalid(field, "must not be empty")
		}
		return invalid(field, "must be at least "+strconv.Itoa(minLen)+" characters")
	}
	if n > maxLen {
		return invalid(field, "must be at most "+strconv.Itoa(maxLen)+" characters")
	}
	return nil
}

func required[T any](field string, v *T) error {
	if v == nil {
		return invalid(field, "is required")
	}
	return nil
}

func checkURL(field string, s *string) error {
	if s == nil {
		return nil
	}
	if err := checkText(field, s, 1, 2048); err != nil {
		return err
	}
	u, err := url.Parse(*s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return invalid(field, "must be an http or https URL")
	}
	return nil
}

func checkRange(field string, n *int, lo, hi int) error {
	if n != nil && (*n < lo || *n > hi) {
		if *n < 0 && lo >= 0 {
			return invalid(field, "must not be negative")
		}
		return invalid(field, "must be from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
	}
	return nil
}

func checkPositive64(field string, n *int64) error {
	if n != nil && *n <= 0 {
		return invalid(field, "must be a positive integer")
	}
	return nil
}

var slugRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

func checkSlug(s *string) error {
	if s == nil {
		return nil
	}
	*s = strings.ToLower(strings.TrimSpace(*s))
	if !slugRE.MatchString(*s) {
		return invalid("slug", "must be 1 to 63 lowercase letters, digits and inner hyphens")
	}
	return nil
}

var currencyRE = regexp.MustCompile(`^[a-z]{3}$`)

func checkCurrency(s *string) error {
	if s == nil {
		return nil
	}
	*s = strings.ToLower(strings.TrimSpace(*s))
	if !currencyRE.MatchString(*s) {
		return invalid("currency", "must be a three-letter ISO 4217 code")
	}
	return nil
}

func checkMetadata(raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	if len(raw) > 16<<10 {
		return invalid("metadata", "must be at most 16 KiB")
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return invalid("metadata", "must be a JSON object")
	}
	return nil
}

func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, invalid(field, "must be an RFC 3339 timestamp")
	}
	return t.UTC(), nil
}
