// Package supabasetest holds a Supabase database as the project's users
// have it: GoTrue's auth schema, Supabase Vault and the marketplace's public
// tables (schema.sql), a small sample with known passwords, keys and secrets
// (sample.sql), and a deterministic generator for volume (generate.sql).
//
// The files are the repository's own copy, embedded so that tests and
// benchmarks anywhere in the module read them without leaving it: a fresh
// clone has nothing beside it.
package supabasetest

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

// Schema is schema.sql: the Supabase-shaped source schema.
//
//go:embed schema.sql
var Schema string

// Sample is sample.sql: rows with the passwords, license keys, API keys and
// Vault secrets the tests check after an import.
//
//go:embed sample.sql
var Sample string

//go:embed generate.sql
var generate string

var psqlSet = regexp.MustCompile(`(?m)^\\set .*$`)

// Generate is generate.sql at the given scale (users), with psql's
// variables resolved so that it runs as one multi-statement script over
// pgx's simple protocol.
func Generate(scale int) string {
	s := psqlSet.ReplaceAllString(generate, "")
	return strings.ReplaceAll(s, ":scale", fmt.Sprint(scale))
}

// File returns the named fixture (schema.sql, sample.sql) or, for
// generate.sql, the raw file with its psql variables; it panics on an
// unknown name, which is a bug in the caller.
func File(name string) string {
	switch name {
	case "schema.sql":
		return Schema
	case "sample.sql":
		return Sample
	case "generate.sql":
		return generate
	}
	panic("supabasetest: no fixture " + name)
}
