package discord_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/vectabase/vectabase/server/discord"
)

// BenchmarkInteract is the bot's handler without HTTP: PING (signature and
// JSON only) beside /whitelist check of a whitelisted member (the same,
// plus the guild's rules and the member's status), for profiles of what a
// check adds:
//
//	go test ./server/discord -run '^$' -bench Interact -benchmem -cpuprofile cpu.out
//
// Requests are signed beforehand, so signing is not measured. The -16
// variants run 16 requests at once; their ratio (ping-16 ns/op over
// check-16 ns/op) is the handler's share of bench/discord's.
func BenchmarkInteract(b *testing.B) {
	e := newEnv(b)
	e.add(adminID, adminPerms, nil, buyerID, robloxName)
	sign := func(body []byte) discord.Request {
		ts := strconv.FormatInt(e.now.Unix(), 10)
		return discord.Request{Body: body, Timestamp: ts, Signature: hex.EncodeToString(ed25519.Sign(e.priv, append([]byte(ts), body...))), IP: "127.0.0.1"}
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		body func() []byte
	}{
		{"ping", func() []byte { return []byte(`{"type":1}`) }},
		{"check", func() []byte {
			return command(guildID, adminID, adminPerms, nil, "whitelist", sub("check", userOpt(buyerID)))
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			reqs := make([]discord.Request, b.N)
			for i := range reqs {
				reqs[i] = sign(c.body())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := e.bot.Interact(ctx, reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
		// 16 at once, as bench/discord's connections: checks then share
		// batched statements, and on two cores ns/op is near the CPU a
		// request costs (the database's included, on the same cores).
		b.Run(c.name+"-16", func(b *testing.B) {
			reqs := make([]discord.Request, b.N)
			for i := range reqs {
				reqs[i] = sign(c.body())
			}
			var next atomic.Int64
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.bot.Interact(ctx, reqs[next.Add(1)-1]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
