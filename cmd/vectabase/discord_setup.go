package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/store"
)

// withBot runs fn with the bot's set-up service as the local operator:
// every change is audited as local-operator.
func withBot(cmd *cobra.Command, fn func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error), asJSON bool) error {
	ctx := cmd.Context()
	d, err := openCLI(ctx)
	if err != nil {
		return err
	}
	defer d.close()
	bot, err := discord.New(discord.Config{}, store.NewBot(d.db, d.kr), d.audit, d.log, discord.WithStore(d.db, d.kr))
	if err != nil {
		return err
	}
	out, text, err := fn(ctx, bot, discord.Actor{Type: vectabase.ActorLocalOperator})
	if err != nil {
		return cliError(err)
	}
	if asJSON {
		if out == nil {
			out = map[string]any{"ok": true}
		}
		return printJSON(out)
	}
	fmt.Fprint(os.Stdout, text)
	return nil
}

func table(write func(w *tabwriter.Writer)) string {
	var b writerBuf
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	write(w)
	_ = w.Flush()
	return string(b)
}

type writerBuf []byte

func (b *writerBuf) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

func str(p *string) string {
	if p == nil {
		return "-"
	}
	return *p
}

func newDiscordServersCmd() *cobra.Command {
	var asJSON bool
	var storeID, name string
	list := &cobra.Command{
		Use: "list", Short: "List the guilds linked to stores", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				l, err := bot.ListServers(ctx, a, storeID)
				return l, table(func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "GUILD\tNAME\tSTORE\tWHITELIST SYSTEM")
					for _, s := range l.Items {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.GuildID, str(s.GuildName), str(s.StoreID), str(s.WhitelistSystemID))
					}
				}), err
			}, asJSON)
		},
	}
	list.Flags().StringVar(&storeID, "store", "", "only the guilds of this store id")
	add := &cobra.Command{
		Use: "add GUILD_ID --store STORE_ID", Short: "Link a guild to a store (moves it from another store)", Args: exactArgs(1),
		Long: "Links a guild the bot is in to a store without Discord's OAuth check (sellers use\n" +
			"GET /api/discord/install instead). A guild linked to another store moves, losing its\n" +
			"product bindings and whitelist system.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if storeID == "" {
				return usagef("servers add needs --store")
			}
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				s, outcome, err := bot.RegisterServer(ctx, a, args[0], storeID, name)
				return discord.InstallResult{Server: s, Outcome: outcome}, fmt.Sprintf("guild %s linked to store %s (%s)\n", s.GuildID, storeID, outcome), err
			}, asJSON)
		},
	}
	add.Flags().StringVar(&storeID, "store", "", "the store id (required)")
	add.Flags().StringVar(&name, "name", "", "the guild's name, for lists")
	var system string
	var clear bool
	set := &cobra.Command{
		Use: "set-system GUILD_ID (--system WHITELIST_SYSTEM_ID | --none)", Short: "Choose the whitelist system a guild's players go in", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (system == "") == !clear {
				return usagef("set-system needs exactly one of --system or --none")
			}
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				var in discord.ServerUpdate
				in.WhitelistSystemID.Set = true
				in.WhitelistSystemID.Null = clear
				in.WhitelistSystemID.Value = system
				s, err := bot.UpdateServer(ctx, a, args[0], in)
				return s, fmt.Sprintf("guild %s whitelist system: %s\n", s.GuildID, str(s.WhitelistSystemID)), err
			}, asJSON)
		},
	}
	set.Flags().StringVar(&system, "system", "", "whitelist system id")
	set.Flags().BoolVar(&clear, "none", false, "no whitelist system")
	remove := &cobra.Command{
		Use: "remove GUILD_ID", Short: "Unlink a guild with its bindings and rules", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				return nil, "removed guild " + args[0] + "\n", bot.RemoveServer(ctx, a, args[0])
			}, asJSON)
		},
	}
	for _, c := range []*cobra.Command{list, add, set, remove} {
		c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	}
	return groupCmd("servers", "Guilds linked to stores", list, add, set, remove)
}

func newDiscordProductsCmd() *cobra.Command {
	var asJSON bool
	var productID, roleID string
	list := &cobra.Command{
		Use: "list GUILD_ID", Short: "List a guild's product bindings", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				l, err := bot.ListProducts(ctx, a, args[0])
				return l, table(func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "ID\tPRODUCT\tNAME\tROLE")
					for _, p := range l.Items {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.ID, p.ProductID, p.ProductName, str(p.RoleID))
					}
				}), err
			}, asJSON)
		},
	}
	add := &cobra.Command{
		Use: "add GUILD_ID --product PRODUCT_ID [--role ROLE_ID]", Short: "Bind a product of the guild's store and the role its buyers get", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if productID == "" {
				return usagef("products add needs --product")
			}
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				in := discord.ProductInput{ProductID: productID}
				if roleID != "" {
					in.RoleID = &roleID
				}
				p, err := bot.AddProduct(ctx, a, args[0], in)
				return p, "bound product " + p.ProductName + " as " + p.ID + "\n", err
			}, asJSON)
		},
	}
	add.Flags().StringVar(&productID, "product", "", "product id (required)")
	add.Flags().StringVar(&roleID, "role", "", "Discord role id buyers get")
	remove := &cobra.Command{
		Use: "remove GUILD_ID BINDING_ID", Short: "Remove a product binding", Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				return nil, "removed binding " + args[1] + "\n", bot.RemoveProduct(ctx, a, args[0], args[1])
			}, asJSON)
		},
	}
	for _, c := range []*cobra.Command{list, add, remove} {
		c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	}
	return groupCmd("products", "A guild's product bindings and roles", list, add, remove)
}

func newDiscordPermissionsCmd() *cobra.Command {
	var asJSON, deny bool
	var command, roleID string
	list := &cobra.Command{
		Use: "list GUILD_ID", Short: "List a guild's command rules", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				l, err := bot.ListPermissions(ctx, a, args[0])
				return l, table(func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "ID\tCOMMAND\tROLE\tALLOWED")
					for _, p := range l.Items {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.ID, p.Command, p.RoleID, strconv.FormatBool(p.Allowed))
					}
				}), err
			}, asJSON)
		},
	}
	add := &cobra.Command{
		Use: "add GUILD_ID --command COMMAND --role ROLE_ID [--deny]", Short: "Allow (or deny) a command to a role (the guild id is @everyone)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if command == "" || roleID == "" {
				return usagef("permissions add needs --command and --role")
			}
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				allowed := !deny
				p, _, err := bot.PutPermission(ctx, a, args[0], discord.PermissionInput{Command: command, RoleID: roleID, Allowed: &allowed})
				return p, fmt.Sprintf("rule %s: %s for role %s allowed=%t\n", p.ID, p.Command, p.RoleID, p.Allowed), err
			}, asJSON)
		},
	}
	add.Flags().StringVar(&command, "command", "", "whitelist, whitelist add|remove|check, or redeem")
	add.Flags().StringVar(&roleID, "role", "", "Discord role id (the guild id for @everyone)")
	add.Flags().BoolVar(&deny, "deny", false, "deny instead of allow (a deny wins over every allow)")
	remove := &cobra.Command{
		Use: "remove GUILD_ID RULE_ID", Short: "Remove a command rule", Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				return nil, "removed rule " + args[1] + "\n", bot.RemovePermission(ctx, a, args[0], args[1])
			}, asJSON)
		},
	}
	for _, c := range []*cobra.Command{list, add, remove} {
		c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	}
	return groupCmd("permissions", "A guild's command rules (bot_command_permissions)", list, add, remove)
}

func newDiscordGrantsCmd() *cobra.Command {
	var asJSON bool
	var status, cursor string
	var limit int
	c := &cobra.Command{
		Use:   "grants GUILD_ID [--status pending|failed|done] [--limit N] [--cursor C]",
		Short: "List a guild's role grants: role changes the bot owes, owed or gave up on",
		Long: "Lists bot_role_grants of a guild, newest first: pending ones the grant worker\n" +
			"still retries, failed ones (given up, or rolled back with their command),\n" +
			"done ones. A failed grant is retried with POST\n" +
			"/api/discord/servers/GUILD_ID/grants/ID/retry.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := store.Page{Limit: limit}
			if cursor != "" {
				cur, err := store.DecodeCursor(cursor)
				if err != nil {
					return usagef("--cursor is not a cursor this command printed")
				}
				p.After = &cur
			}
			return withBot(cmd, func(ctx context.Context, bot *discord.Service, a discord.Actor) (any, string, error) {
				l, err := bot.ListGrants(ctx, a, args[0], status, p)
				text := table(func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "ID\tSTATE\tACTION\tMEMBER\tROLE\tATTEMPTS\tLAST STATUS\tCOMMAND\tCREATED")
					for _, g := range l.Items {
						last := "-"
						if g.LastStatus != nil {
							last = strconv.Itoa(*g.LastStatus)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", g.ID, g.State, g.Action, g.DiscordUserID, g.RoleID,
							g.Attempts, last, g.Command, g.CreatedAt.UTC().Format(time.RFC3339))
					}
				})
				if l.NextCursor != nil {
					text += "next page: --cursor " + *l.NextCursor + "\n"
				}
				return l, text, err
			}, asJSON)
		},
	}
	c.Flags().StringVar(&status, "status", "", "only grants in this state: pending, failed or done")
	c.Flags().IntVar(&limit, "limit", discord.DefaultGrantPage, "grants per page (1 to 200)")
	c.Flags().StringVar(&cursor, "cursor", "", "the next page's cursor, as printed")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
