package discord

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store"
)

// formerCheckReply is /whitelist check's answer as it was built before
// checkReply (strings.Builder and fmt), the reference checkReply is held to.
func formerCheckReply(target string, st store.MemberStatus) string {
	if st.Records == 0 && st.Entry == nil {
		return fmt.Sprintf("%s is not whitelisted here.", mention(target))
	}
	var b strings.Builder
	b.WriteString(mention(target) + " is whitelisted")
	if e := st.Entry; e != nil {
		name := ""
		if e.RobloxUsername != nil {
			name = *e.RobloxUsername + " "
		}
		b.WriteString(" as Roblox user " + name + "(" + strconv.FormatInt(e.RobloxUserID, 10) + ")")
		if e.ExpiresAt != nil {
			b.WriteString(", until " + e.ExpiresAt.UTC().Format(time.RFC3339))
		}
	} else if st.RecordRobloxUserID != nil {
		b.WriteString(" as Roblox user (" + strconv.FormatInt(*st.RecordRobloxUserID, 10) + ")")
	}
	if len(st.Products) > 0 {
		b.WriteString("; products: " + strings.Join(st.Products, ", "))
	}
	b.WriteString(".")
	return fmt.Sprintf("%s", b.String())
}

// TestProperty45_CheckReplySaysWhatItSaidBefore: for any member status
// (records or not, an entry with or without a username and expiry in any
// time zone, any products, any Roblox ids), the appended /whitelist check
// reply is the text the former strings.Builder version wrote (rapid's
// default 100 runs; -rapid.checks 1000 passes too).
func TestProperty45_CheckReplySaysWhatItSaidBefore(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		target := rapid.StringMatching(`[0-9]{1,20}`).Draw(t, "target")
		var st store.MemberStatus
		st.Records = rapid.IntRange(0, 3).Draw(t, "records")
		if rapid.Bool().Draw(t, "recordRoblox") {
			id := rapid.Int64().Draw(t, "recordRobloxID")
			st.RecordRobloxUserID = &id
		}
		if rapid.Bool().Draw(t, "entry") {
			e := &store.MemberEntry{RobloxUserID: rapid.Int64().Draw(t, "robloxID")}
			if rapid.Bool().Draw(t, "username") {
				name := rapid.String().Draw(t, "name")
				e.RobloxUsername = &name
			}
			if rapid.Bool().Draw(t, "expires") {
				at := time.Unix(rapid.Int64Range(-1e11, 1e11).Draw(t, "at"), rapid.Int64Range(0, 1e9-1).Draw(t, "ns")).
					In(time.FixedZone("z", rapid.IntRange(-14*3600, 14*3600).Draw(t, "offset")))
				e.ExpiresAt = &at
			}
			st.Entry = e
		}
		st.Products = rapid.SliceOfN(rapid.String(), 0, 4).Draw(t, "products")
		if want, got := formerCheckReply(target, st), checkReply(target, st); got != want {
			t.Fatalf("checkReply = %q, the former reply %q", got, want)
		}
	})
}
