package store

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// slowQueryTracer logs and counts every statement slower than threshold. It
// logs the statement's shape only: parameters are never logged, and literals
// written into the SQL text are replaced by '?'.
type slowQueryTracer struct {
	threshold time.Duration
	log       zerolog.Logger
	counter   prometheus.Counter
}

type traceStartKey struct{}

type traceStart struct {
	at  time.Time
	sql string
}

func (t *slowQueryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceStartKey{}, traceStart{at: time.Now(), sql: data.SQL})
}

func (t *slowQueryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	st, ok := ctx.Value(traceStartKey{}).(traceStart)
	if !ok {
		return
	}
	d := time.Since(st.at)
	if d < t.threshold {
		return
	}
	t.counter.Inc()
	t.log.Warn().
		Str("sql", QueryShape(st.sql)).
		Dur("duration", d).
		Bool("failed", data.Err != nil).
		Msg("slow query")
}

var (
	reStringLit = regexp.MustCompile(`'(?:[^']|'')*'`)
	reNumberLit = regexp.MustCompile(`\b\d+(?:\.\d+)?\b`)
	reSpace     = regexp.MustCompile(`\s+`)
)

// QueryShape reduces a statement to its shape: whitespace folded, string and
// number literals replaced by '?', so that no value reaches a log line.
// Placeholders ($1) are kept.
func QueryShape(sql string) string {
	s := reStringLit.ReplaceAllString(sql, "?")
	s = reNumberLit.ReplaceAllStringFunc(s, func(m string) string { return "?" })
	s = strings.ReplaceAll(s, "$?", "$n")
	s = reSpace.ReplaceAllString(strings.TrimSpace(s), " ")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
