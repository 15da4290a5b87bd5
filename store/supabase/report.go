package supabase

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what an import did and what it checked: the JSON written by
// --report and printed by --json, and the human summary of WriteText. It
// never holds a value from the data, only names, counts and ids.
type Report struct {
	Source     string         `json:"source"`
	DryRun     bool           `json:"dryRun"`
	Replace    bool           `json:"replace"`
	Committed  bool           `json:"committed"`
	StartedAt  time.Time      `json:"startedAt"`
	FinishedAt time.Time      `json:"finishedAt"`
	DurationMS int64          `json:"durationMs"`
	Tables     []*TableReport `json:"tables"`
	// Emptied lists the target tables --replace emptied first.
	Emptied []string `json:"emptied,omitempty"`
	Checks  []Check  `json:"checks"`
	// Licenses counts the licenses the import carried (whitelist_users and
	// whitelist_entries, through the licenses view), by status.
	Licenses *LicenseCounts `json:"licenses,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
	// Error is the failure that stopped the import; the target is unchanged.
	Error string `json:"error,omitempty"`
}

// LicenseCounts are the imported licenses by kind and status.
type LicenseCounts struct {
	Total     int64 `json:"total"`
	System    int64 `json:"system"`  // of whitelist systems (whitelist_users)
	Product   int64 `json:"product"` // of developer products (whitelist_entries)
	Active    int64 `json:"active"`
	Revoked   int64 `json:"revoked"`
	Expired   int64 `json:"expired"`
	HWIDBound int64 `json:"hwidBound"`
}

// TableReport is one source table's way into one target table.
type TableReport struct {
	Source  string `json:"source"`
	Target  string `json:"target,omitempty"`
	Read    int64  `json:"read"`
	Written int64  `json:"written"`
	Skipped int64  `json:"skipped"`
	// SkipReasons counts skipped rows by why they were skipped.
	SkipReasons map[string]int64 `json:"skipReasons,omitempty"`
	// Dropped lists source columns left behind (--allow-drop).
	Dropped    []string `json:"droppedColumns,omitempty"`
	DurationMS int64    `json:"durationMs"`
}

func (t *TableReport) skip(reason string) {
	if t.SkipReasons == nil {
		t.SkipReasons = map[string]int64{}
	}
	t.SkipReasons[reason]++
	t.Skipped++
}

// Check is one verification and its result.
type Check struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"`
}

// Rows returns the rows written over all tables.
func (r *Report) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Written
	}
	return n
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) {
	state := "committed"
	switch {
	case r.Error != "":
		state = "FAILED, target unchanged"
	case !r.Committed && r.DryRun:
		state = "dry run, nothing committed"
	case !r.Committed:
		state = "not committed"
	}
	fmt.Fprintf(w, "Import from %s: %s (%s)\n", r.Source, state, time.Duration(r.DurationMS)*time.Millisecond)
	if len(r.Emptied) > 0 {
		fmt.Fprintf(w, "Emptied first (--replace): %s\n", strings.Join(r.Emptied, ", "))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTARGET\tREAD\tWRITTEN\tSKIPPED\tTIME\t")
	for _, t := range r.Tables {
		target := t.Target
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t\n", t.Source, target, t.Read, t.Written, t.Skipped, time.Duration(t.DurationMS)*time.Millisecond)
	}
	tw.Flush()
	for _, t := range r.Tables {
		reasons := make([]string, 0, len(t.SkipReasons))
		for why := range t.SkipReasons {
			reasons = append(reasons, why)
		}
		sort.Strings(reasons)
		for _, why := range reasons {
			fmt.Fprintf(w, "  %s: skipped %d: %s\n", t.Source, t.SkipReasons[why], why)
		}
		if len(t.Dropped) > 0 {
			fmt.Fprintf(w, "  %s: columns left behind (--allow-drop): %s\n", t.Source, strings.Join(t.Dropped, ", "))
		}
	}
	ok := 0
	for _, c := range r.Checks {
		if c.OK {
			ok++
		}
	}
	if l := r.Licenses; l != nil {
		fmt.Fprintf(w, "Licenses: %d (%d of whitelist systems, %d of developer products; %d active, %d revoked, %d expired; %d bound to a hardware id)\n",
			l.Total, l.System, l.Product, l.Active, l.Revoked, l.Expired, l.HWIDBound)
	}
	fmt.Fprintf(w, "Checks: %d of %d passed\n", ok, len(r.Checks))
	for _, c := range r.Checks {
		mark := "ok    "
		if !c.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(w, "  %s %s %s: %s\n", mark, c.Name, c.Subject, c.Detail)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "Error: %s\n", r.Error)
	}
}
