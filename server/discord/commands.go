package discord

// ApplicationCommand is a slash command as Discord's
// "Create Global Application Command" and bulk-overwrite endpoints take it.
type ApplicationCommand struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Type        int             `json:"type"`
	Contexts    []int           `json:"contexts,omitempty"`
	Options     []CommandOption `json:"options,omitempty"`
}

// CommandOption is an option (or sub-command) of an ApplicationCommand.
type CommandOption struct {
	Type        int             `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Required    bool            `json:"required,omitempty"`
	MaxLength   int             `json:"max_length,omitempty"`
	Options     []CommandOption `json:"options,omitempty"`
}

// Command names as bot_command_permissions.command holds them. A rule may
// also name the group ("whitelist") to cover every sub-command.
const (
	CmdWhitelistAdd    = "whitelist add"
	CmdWhitelistRemove = "whitelist remove"
	CmdWhitelistCheck  = "whitelist check"
	CmdRedeem          = "redeem"
)

// contextGuild limits a command to guilds: every command needs a guild's
// configuration and member roles.
const contextGuild = 0

// Commands returns the bot's slash commands, as `vectabase discord
// register-commands` registers them.
func Commands() []ApplicationCommand {
	user := func(desc string) CommandOption {
		return CommandOption{Type: OptionUser, Name: "user", Description: desc, Required: true}
	}
	product := CommandOption{Type: OptionString, Name: "product", Description: "Product (needed when the server sells more than one)", MaxLength: 100}
	return []ApplicationCommand{
		{
			Name: "whitelist", Description: "Manage this server's whitelist", Type: 1, Contexts: []int{contextGuild},
			Options: []CommandOption{
				{Type: OptionSubCommand, Name: "add", Description: "Whitelist a member under their Roblox account", Options: []CommandOption{
					user("Member to whitelist"),
					{Type: OptionString, Name: "roblox", Description: "Roblox username", Required: true, MaxLength: 20},
					product,
				}},
				{Type: OptionSubCommand, Name: "remove", Description: "Remove a member from the whitelist", Options: []CommandOption{user("Member to remove")}},
				{Type: OptionSubCommand, Name: "check", Description: "Show whether a member is whitelisted", Options: []CommandOption{user("Member to check")}},
			},
		},
		{
			Name: "redeem", Description: "Link a purchase to your Discord account", Type: 1, Contexts: []int{contextGuild},
			Options: []CommandOption{
				{Type: OptionString, Name: "key", Description: "Your license key", Required: true, MaxLength: 100},
				product,
			},
		},
	}
}
