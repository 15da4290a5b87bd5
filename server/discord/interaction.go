package discord

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
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
	if err := decodeInteraction(body, &i); err != nil {
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
		name = subcommand(name, opts[0].Name)
		opts = opts[0].Options
	}
	return name, opts
}

// subcommand is name + " " + sub, the bot's own commands without an
// allocation.
func subcommand(name, sub string) string {
	if name == "whitelist" {
		switch sub {
		case "add":
			return CmdWhitelistAdd
		case "remove":
			return CmdWhitelistRemove
		case "check":
			return CmdWhitelistCheck
		}
	}
	return name + " " + sub
}

// stringOption returns the string value of option name ("" when absent or
// not a string).
func stringOption(opts []InteractionOption, name string) string {
	for _, o := range opts {
		if o.Name != name {
			continue
		}
		return strings.TrimSpace(stringValue(o.Value))
	}
	return ""
}

// stringValue is the string a JSON value holds ("" when it holds another
// type), as json.Unmarshal into a string gives it.
func stringValue(v json.RawMessage) string {
	if len(v) >= 2 && v[0] == '"' {
		d := decoder{b: v}
		if b, err := d.stringBytes(); err == nil && d.i == len(v) {
			return string(b)
		}
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
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

// AppendJSON appends r as encoding/json marshals it (the same bytes, HTML
// characters escaped alike), without reflection: every interaction is
// answered with one.
func (r Response) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(r.Type), 10)
	if d := r.Data; d != nil {
		dst = append(dst, `,"data":{`...)
		if d.Content != "" {
			dst = append(dst, `"content":`...)
			dst = appendJSONString(dst, d.Content)
			dst = append(dst, ',')
		}
		dst = append(dst, `"flags":`...)
		dst = strconv.AppendInt(dst, int64(d.Flags), 10)
		dst = append(dst, `,"allowed_mentions":{"parse":`...)
		if d.AllowedMentions.Parse == nil {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, '[')
			for i, p := range d.AllowedMentions.Parse {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, p)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, "}}"...)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoder with HTML escaping
// (its default): <, > and & as \u003c, \u003e, \u0026, control bytes
// escaped, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ephemeral is a reply only the caller sees.
func ephemeral(format string, args ...any) Response {
	return message(fmt.Sprintf(format, args...))
}

// message is a reply only the caller sees, of content as it is.
func message(content string) Response {
	return Response{Type: ResponseChannelMessage, Data: &ResponseData{
		Content:         content,
		Flags:           FlagEphemeral,
		AllowedMentions: allowedMentions{Parse: []string{}},
	}}
}

// deferredReply acknowledges a command that will answer by editing this
// (ephemeral) response.
func deferredReply() Response {
	return Response{Type: ResponseDeferred, Data: &ResponseData{Flags: FlagEphemeral, AllowedMentions: allowedMentions{Parse: []string{}}}}
}
