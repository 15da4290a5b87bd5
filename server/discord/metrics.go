package discord

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vectabase/vectabase/server"
)

// Command outcomes, the outcome label of vectabase_discord_commands_total.
const (
	outcomeOK          = "ok"          // the command did what was asked
	outcomeRefused     = "refused"     // the member's input was refused (unknown key, not whitelisted, …)
	outcomeDenied      = "denied"      // bot_command_permissions refused the caller
	outcomeUnavailable = "unavailable" // Roblox or Discord did not answer in time
	outcomeError       = "error"       // our own failure (database, audit)
	outcomeReplay      = "replay"      // an interaction id seen before
	outcomeNotSetUp    = "not_set_up"  // a guild with no configuration
	outcomeUnknown     = "unknown"     // a command the bot does not have
)

type metrics struct {
	commands *prometheus.CounterVec

	// bound caches each (command, outcome) counter: WithLabelValues hashes
	// its labels on every call, and every command counts once.
	mu    sync.RWMutex
	bound map[[2]string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c, err := server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_discord_commands_total",
		Help: "Discord bot commands by command and outcome.",
	}, []string{"command", "outcome"}))
	if err != nil {
		return nil, err
	}
	return &metrics{commands: c, bound: map[[2]string]prometheus.Counter{}}, nil
}

func (m *metrics) count(command, outcome string) {
	k := [2]string{command, outcome}
	m.mu.RLock()
	c, ok := m.bound[k]
	m.mu.RUnlock()
	if !ok {
		c = m.commands.WithLabelValues(command, outcome)
		m.mu.Lock()
		m.bound[k] = c
		m.mu.Unlock()
	}
	c.Inc()
}
