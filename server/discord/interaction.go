package discord

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Interaction types Discord sends (documented in Discord's "Receiving and
// Responding" interactions reference).
const (
	InteractionPing               = 1
	InteractionApplicationCommand = 2
)

// Response types and message flags we answer with.
const (
	ResponsePong           = 1
	ResponseChannelMessage = 4
	// ResponseDeferred acknowledges a command at once; its reply follows
	// as an edit of the original response.
	ResponseDeferred = 5
	FlagEphemeral    = 1 << 6
)

// Application command option types.
const (
	OptionSubCommand = 1
	OptionString     = 3
	OptionUser       = 6
)

// permAdministrator is Discord's ADMINISTRATOR permission bit. Discord
// computes member.permissions with every bit set for the guild owner, so
// the owner passes this check too.
const permAdministrator = 3

// Interaction is the part of a Discord interaction payload the bot reads.
// Unknown fields are ignored: Discord adds fields without notice.
type Interaction struct {
	ID            string       `json:"id"`
	ApplicationID string       `json:"application_id"`
	Type          int          `json:"type"`
	Token         string       `json:"token"` // a secret for 15 minutes: never logged
	GuildID       string       `json:"guild_id"`
	Member        *Member      `json:"member"`
	User          *User        `json:"user"`
	Data          *CommandData `json:"data"`
}

// Member is the guild member who ran a command.
type Member struct {
	User        *User    `json:"user"`
	Roles       []string `json:"roles"`
	Permissions string   `json:"permissions"`
}

// User is a Discord user.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// CommandData is the command of an application command interaction.
type CommandData struct {
	ID      string              `json:"id"`
	Name    string              `json:"name"`
	Type    int                 `json:"type"`
	Options []InteractionOption `json:"options"`
}

// InteractionOption is one option of a command; sub-commands nest their own options.
type InteractionOption struct {
	Name    string              `json:"name"`
	Type    int                 `json:"type"`
	Value   json.RawMessage     `json:"value"`
	Options []InteractionOption `json:"options"`
}

// ErrMalformed is wrapped by every ParseInteraction failure.
var ErrMalformed = errors.New("malformed interaction")

// ParseInteraction decodes a Discord interaction body and checks the parts
// the bot relies on: a known shape of ids (snowflakes) and, for commands, a
// guild member with a user. Errors wrap ErrMalformed and never quote input.
func ParseInteraction(body []byte) (Interaction, error) {
	var i Interaction
	if err := json.Unmarshal(body, &i); err != nil {
		return Interaction{}, fmt.Errorf("%w: not a JSON interaction object", ErrMalformed)
	}
	switch i.Type {
	case InteractionPing:
		return i, nil
	case InteractionApplicationCommand:
	default:
		// Other types (components, autocomplete, modals) are valid Discord
		// payloads the bot does not use; the caller answers them politely.
		return i, nil
	}
	if i.Data == nil || i.Data.Name == "" {
		return Interaction{}, fmt.Errorf("%w: command without data", ErrMalformed)
	}
	// The id makes a delivery unique (replays are refused by it).
	if !isSnowflake(i.ID) {
		return Interaction{}, fmt.Errorf("%w: id is not a snowflake", ErrMalformed)
	}
	if len(i.Token) > 1000 || (i.ApplicationID != "" && !isSnowflake(i.ApplicationID)) {
		return Interaction{}, fmt.Errorf("%w: bad token or application_id", ErrMalformed)
	}
	if i.GuildID != "" && !isSnowflake(i.GuildID) {
		return Interaction{}, fmt.Errorf("%w: guild_id is not a snowflake", ErrMalformed)
	}
	if i.Member != nil {
		if i.Member.User == nil || !isSnowflake(i.Member.User.ID) {
			return Interaction{}, fmt.Errorf("%w: member without a user id", ErrMalformed)
		}
		for _, r := range i.Member.Roles {
			if !isSnowflake(r) {
				return Interaction{}, fmt.Errorf("%w: member role is not a snowflake", ErrMalformed)
			}
		}
	}
	return i, nil
}

// isSnowflake reports whether s looks like a Discord id: 1 to 20 digits.
func isSnowflake(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Command returns the full command name ("whitelist add", "redeem") and
// the options of the innermost (sub-)command.
func (i Interaction) Command() (string, []InteractionOption) {
	if i.Data == nil {
		return "", nil
	}
	name, opts := i.Data.Name, i.Data.Options
	for len(opts) == 1 && opts[0].Type == OptionSubCommand {
		name += " " + opts[0].Name
		opts = opts[0].Options
	}
	return name, opts
}

// stringOption returns the string value of option name ("" when absent or
// not a string).
func stringOption(opts []InteractionOption, name string) string {
	for _, o := range opts {
		if o.Name != name {
			continue
		}
		var s string
		if json.Unmarshal(o.Value, &s) != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	return ""
}

// userOption returns the user id of user option name, or "" when absent or
// not a snowflake.
func userOption(opts []InteractionOption, name string) string {
	id := stringOption(opts, name)
	if !isSnowflake(id) {
		return ""
	}
	return id
}

// isAdministrator reports whether a member.permissions bit set (a decimal
// string, possibly wider than 64 bits) has ADMINISTRATOR.
func isAdministrator(perms string) bool {
	if perms == "" || len(perms) > 80 {
		return false
	}
	n, ok := new(big.Int).SetString(perms, 10)
	return ok && n.Sign() > 0 && n.Bit(permAdministrator) == 1
}

// Response is the reply to an interaction.
type Response struct {
	Type int           `json:"type"`
	Data *ResponseData `json:"data,omitempty"`
}

// ResponseData is the message of a reply. AllowedMentions is always empty so
// that mentions in a reply never ping anyone.
type ResponseData struct {
	Content         string          `json:"content,omitempty"`
	Flags           int             `json:"flags"`
	AllowedMentions allowedMentions `json:"allowed_mentions"`
}

type allowedMentions struct {
	Parse []string `json:"parse"`
}

// ephemeral is a reply only the caller sees.
func ephemeral(format string, args ...any) Response {
	return Response{Type: ResponseChannelMessage, Data: &ResponseData{
		Content:         fmt.Sprintf(format, args...),
		Flags:           FlagEphemeral,
		AllowedMentions: allowedMentions{Parse: []string{}},
	}}
}

// deferredReply acknowledges a command that will answer by editing this
// (ephemeral) response.
func deferredReply() Response {
	return Response{Type: ResponseDeferred, Data: &ResponseData{Flags: FlagEphemeral, AllowedMentions: allowedMentions{Parse: []string{}}}}
}
