package policies

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

//go:embed access.json
var accessJSON []byte

// Capability is what a rule of the access policy allows on matching secrets.
type Capability string

// Capabilities of the secrets vault.
const (
	CapRead   Capability = "read"
	CapCreate Capability = "create"
	CapUpdate Capability = "update"
	CapDelete Capability = "delete"
	CapList   Capability = "list"
)

var knownCaps = map[Capability]bool{CapRead: true, CapCreate: true, CapUpdate: true, CapDelete: true, CapList: true}

// userIDVar is the one template variable patterns may use.
const userIDVar = "{{user_id}}"

// AccessRule grants capabilities on the secret names its pattern matches.
type AccessRule struct {
	Pattern      string       `json:"pattern"`
	Capabilities []Capability `json:"capabilities"`
}

// Access is the secrets vault's access policy: roles to rules. The zero
// value denies everything.
type Access struct {
	roles map[string][]AccessRule
}

type accessFile struct {
	Comment string                  `json:"_comment"`
	Roles   map[string][]AccessRule `json:"roles"`
}

// AccessPolicy returns the embedded policy in access.json. An error means
// the shipped file is broken; tests keep that from happening.
func AccessPolicy() (*Access, error) { return ParseAccess(accessJSON) }

// ParseAccess reads a policy in access.json's format, refusing unknown
// fields and capabilities, empty patterns and template variables other than
// {{user_id}}.
func ParseAccess(data []byte) (*Access, error) {
	var f accessFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("policies: access policy: %w", err)
	}
	for role, rules := range f.Roles {
		if role == "" {
			return nil, fmt.Errorf("policies: access policy: empty role name")
		}
		for _, r := range rules {
			if r.Pattern == "" {
				return nil, fmt.Errorf("policies: access policy: role %s has a rule without a pattern", role)
			}
			if rest := strings.ReplaceAll(r.Pattern, userIDVar, ""); strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
				return nil, fmt.Errorf("policies: access policy: role %s pattern %q: only %s may be templated", role, r.Pattern, userIDVar)
			}
			for _, c := range r.Capabilities {
				if !knownCaps[c] {
					return nil, fmt.Errorf("policies: access policy: role %s pattern %q: unknown capability %q", role, r.Pattern, c)
				}
			}
		}
	}
	return &Access{roles: f.Roles}, nil
}

// Allowed reports whether role may do c on the secret called name. userID
// fills {{user_id}}; a rule using it never matches when userID is empty.
func (a *Access) Allowed(role, userID, name string, c Capability) bool {
	if a == nil {
		return false
	}
	for _, r := range a.roles[role] {
		if !hasCap(r, c) {
			continue
		}
		if matchTemplate(r.Pattern, userID, name) {
			return true
		}
	}
	return false
}

// Any reports whether role has c on some name at all (listing is refused
// outright to roles that could never see an entry).
func (a *Access) Any(role string, c Capability) bool {
	if a == nil {
		return false
	}
	for _, r := range a.roles[role] {
		if hasCap(r, c) {
			return true
		}
	}
	return false
}

// MayTouch reports whether role has any capability on name: when it has
// none, the caller learns nothing about the secret, not even whether it
// exists.
func (a *Access) MayTouch(role, userID, name string) bool {
	for c := range knownCaps {
		if a.Allowed(role, userID, name, c) {
			return true
		}
	}
	return false
}

// Personal reports whether name lies in userID's own namespace: some rule
// of any role whose pattern uses {{user_id}} matches name with userID
// filled in (dev/<id>/… in the shipped policy). A secret created there
// belongs to the user and goes with their account; a secret created
// anywhere else (stripe_secret_key written by an admin, say) is the
// platform's and belongs to no one.
func (a *Access) Personal(userID, name string) bool {
	if a == nil || userID == "" {
		return false
	}
	for _, rules := range a.roles {
		for _, r := range rules {
			if strings.Contains(r.Pattern, userIDVar) && matchTemplate(r.Pattern, userID, name) {
				return true
			}
		}
	}
	return false
}

func hasCap(r AccessRule, c Capability) bool {
	for _, rc := range r.Capabilities {
		if rc == c {
			return true
		}
	}
	return false
}

// matchTemplate matches name against pattern with {{user_id}} standing for
// userID taken literally (an id holding '*' matches only itself).
func matchTemplate(pattern, userID, name string) bool {
	parts := strings.Split(pattern, userIDVar)
	if len(parts) > 1 && userID == "" {
		return false
	}
	// Turn the pattern into tokens: literal runs and wildcards, where the
	// user id is a literal even if it holds glob characters.
	var toks []token
	for i, p := range parts {
		if i > 0 {
			toks = append(toks, token{lit: userID})
		}
		for _, ch := range p {
			switch ch {
			case '*':
				toks = append(toks, token{star: true})
			case '?':
				toks = append(toks, token{one: true})
			default:
				toks = append(toks, token{lit: string(ch)})
			}
		}
	}
	return match(toks, name)
}

type token struct {
	lit       string
	star, one bool
}

// match is glob matching with backtracking over the last star only, which
// is linear-ish and never exponential.
func match(toks []token, s string) bool {
	ti, si := 0, 0
	starTi, starSi := -1, 0
	for si < len(s) || ti < len(toks) {
		if ti < len(toks) {
			t := toks[ti]
			switch {
			case t.star:
				starTi, starSi = ti, si
				ti++
				continue
			case t.one:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					ti, si = ti+1, si+n
					continue
				}
			default:
				if strings.HasPrefix(s[si:], t.lit) {
					ti, si = ti+1, si+len(t.lit)
					continue
				}
			}
		}
		if starTi >= 0 && starSi < len(s) {
			_, n := utf8.DecodeRuneInString(s[starSi:])
			starSi += n
			ti, si = starTi+1, starSi
			continue
		}
		return false
	}
	return true
}
