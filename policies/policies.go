// Package policies holds Vectabase's declarative policy files, embedded in
// the binary, and typed loaders for them. Each loader reads one file.
package policies

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
)

//go:embed sensitive_columns.json
var sensitiveColumnsJSON []byte

//go:embed vault/vectabase-transit.hcl
var vaultTransitPolicy string

// Column is a column holding keyring ciphertext.
type Column struct {
	Table  string `json:"table"`
	Column string `json:"column"`
	// BlindIndex names the bytea column beside it holding
	// Keyring.BlindIndex(Table, Column, value), or is empty.
	BlindIndex string `json:"blind_index,omitempty"`
}

// String returns "table.column".
func (c Column) String() string { return c.Table + "." + c.Column }

// PlainColumn is a bytea column that holds no keyring ciphertext, and why:
// a blind index, a keyed hash, or key material wrapped by the KEK.
type PlainColumn struct {
	Table  string `json:"table"`
	Column string `json:"column"`
	Reason string `json:"reason"`
}

// String returns "table.column".
func (c PlainColumn) String() string { return c.Table + "." + c.Column }

type sensitiveColumnsFile struct {
	Comment      string        `json:"_comment"`
	Sensitive    []Column      `json:"sensitive"`
	NotEncrypted []PlainColumn `json:"not_encrypted"`
}

var ident = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func loadSensitiveColumns() (sensitiveColumnsFile, error) {
	var f sensitiveColumnsFile
	dec := json.NewDecoder(bytes.NewReader(sensitiveColumnsJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("policies: sensitive_columns.json: %w", err)
	}
	seen := map[string]bool{}
	check := func(table, column string) error {
		if !ident.MatchString(table) || !ident.MatchString(column) {
			return fmt.Errorf("policies: sensitive_columns.json: %q.%q is not a plain SQL identifier", table, column)
		}
		if seen[table+"."+column] {
			return fmt.Errorf("policies: sensitive_columns.json: %s.%s listed twice", table, column)
		}
		seen[table+"."+column] = true
		return nil
	}
	for _, c := range f.Sensitive {
		if err := check(c.Table, c.Column); err != nil {
			return f, err
		}
		if c.BlindIndex != "" && !ident.MatchString(c.BlindIndex) {
			return f, fmt.Errorf("policies: sensitive_columns.json: blind index %q of %s is not a plain SQL identifier", c.BlindIndex, c)
		}
	}
	for _, c := range f.NotEncrypted {
		if err := check(c.Table, c.Column); err != nil {
			return f, err
		}
		if c.Reason == "" {
			return f, fmt.Errorf("policies: sensitive_columns.json: %s has no reason", c)
		}
	}
	return f, nil
}

// SensitiveColumns returns every column whose values are written and read
// only through the keyring. Table and column names are checked to be plain
// SQL identifiers, so callers may put them in queries.
func SensitiveColumns() ([]Column, error) {
	f, err := loadSensitiveColumns()
	return f.Sensitive, err
}

// NotEncryptedColumns returns the bytea columns that hold no keyring
// ciphertext (blind indexes, keyed hashes, wrapped keysets), each with its
// reason. Any other bytea column must be in SensitiveColumns.
func NotEncryptedColumns() ([]PlainColumn, error) {
	f, err := loadSensitiveColumns()
	return f.NotEncrypted, err
}

// VaultTransitPolicy returns the least-privilege Vault policy (HCL) the
// server's token needs for the default transit mount and key.
func VaultTransitPolicy() string { return vaultTransitPolicy }
