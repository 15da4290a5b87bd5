package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/joho/godotenv"
	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store/pgcluster"
)

const defaultDevPort = 54329

func newDevCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run everything on this machine with no set-up (private PostgreSQL under ./.vectabase)",
		Long: `Run the embedded default. Without DATABASE_URL it starts a private
PostgreSQL cluster under ./.vectabase/pg from the system's PostgreSQL
binaries, creates ./.vectabase/master.key on first run, migrates, creates an
admin user on first run (printed once), serves on 127.0.0.1:8080, and stops
the cluster on Ctrl-C. Data survives restarts. It writes
./.vectabase/dev.env so that other commands run here use the same settings.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error { return runDev(cmd.Context()) },
	}
}

func runDev(ctx context.Context) error {
	// dev decides its own settings: only .env and the real environment
	// count, not the dev.env it writes itself.
	if err := loadEnvFiles(true); err != nil {
		return err
	}
	if err := os.MkdirAll(devDir, devDirMode()); err != nil {
		return fmt.Errorf("create %s: %w", devDir, err)
	}
	// The server runs as postgres when we are root: it must be able to
	// pass through .vectabase (but not list it).
	if err := os.Chmod(devDir, devDirMode()); err != nil {
		return err
	}
	state, _ := godotenv.Read(filepath.Join(devDir, "dev.env"))
	if state == nil {
		state = map[string]string{}
	}

	var cluster *pgcluster.Cluster
	if os.Getenv("DATABASE_URL") == "" {
		c, err := startDevCluster(ctx, state)
		if err != nil {
			return err
		}
		cluster = c
		defer func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "vectabase: stop the dev cluster: %v\n", err)
			}
		}()
		os.Setenv("DATABASE_URL", c.URL("vectabase"))
	}
	if os.Getenv("DB_SSLMODE") == "" {
		os.Setenv("DB_SSLMODE", "disable")
	}
	keyFile := os.Getenv("KEYRING_MASTER_KEY_FILE")
	if keyFile == "" && os.Getenv("KEYRING_PASSPHRASE") == "" {
		keyFile = filepath.Join(devDir, "master.key")
		if err := ensureMasterKey(keyFile); err != nil {
			return err
		}
		os.Setenv("KEYRING_MASTER_KEY_FILE", keyFile)
	}
	if os.Getenv("SMTP_URL") == "" && os.Getenv("MAIL_DIR") == "" {
		// No SMTP server needed: mails become files, their links are logged.
		os.Setenv("MAIL_DIR", filepath.Join(devDir, "mail"))
	}
	cfg, err := loadConfig(true)
	if err != nil {
		return err
	}
	devEnv := map[string]string{
		"DATABASE_URL": cfg.Store.ConnString(),
		"HTTP_ADDR":    cfg.Server.HTTPAddr,
	}
	if keyFile != "" {
		abs, _ := filepath.Abs(keyFile)
		devEnv["KEYRING_MASTER_KEY_FILE"] = abs
	}
	if cluster != nil {
		devEnv["VECTABASE_DEV_PG_PORT"] = strconv.Itoa(cluster.Port)
		devEnv["VECTABASE_DEV_PG_PASSWORD"] = cluster.Password
	}
	if err := writeDevEnv(devEnv); err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, "console", os.Stderr)
	if err != nil {
		return err
	}
	return runServer(ctx, cfg, log, runOptions{
		migrate:       true,
		adminGenerate: true,
		onAdmin: func(email, password string) {
			fmt.Printf("admin email: %s\nadmin password: %s\n", email, password)
		},
	})
}

func devDirMode() os.FileMode {
	if os.Geteuid() == 0 {
		return 0o711
	}
	return 0o700
}

// startDevCluster starts (creating on first run) the private cluster under
// ./.vectabase/pg and makes sure the vectabase database exists.
func startDevCluster(ctx context.Context, state map[string]string) (*pgcluster.Cluster, error) {
	port, _ := strconv.Atoi(state["VECTABASE_DEV_PG_PORT"])
	if port == 0 {
		port = defaultDevPort
	}
	dataDir, err := devDataDir()
	if err != nil {
		return nil, err
	}
	c, err := pgcluster.New(dataDir, port)
	if err != nil {
		return nil, err
	}
	c.Password = state["VECTABASE_DEV_PG_PASSWORD"]
	if !c.Initialized() {
		pw, err := auth.RandomPassword(32)
		if err != nil {
			return nil, err
		}
		c.Password = pw
		fmt.Fprintln(os.Stderr, "vectabase: creating the dev PostgreSQL cluster in", c.DataDir)
		if err := c.Init(ctx); err != nil {
			return nil, err
		}
	} else if c.Password == "" {
		return nil, fmt.Errorf("%s exists but %s/dev.env has no password for it: remove %s to start afresh", c.DataDir, devDir, devDir)
	}
	if c.Running(ctx) {
		// A dev server that was killed left its cluster running: reuse it.
		fmt.Fprintln(os.Stderr, "vectabase: reusing the running dev cluster")
	} else {
		if !pgcluster.PortFree(c.Port) {
			p, err := pgcluster.FreePort()
			if err != nil {
				return nil, err
			}
			c.Port = p
		}
		if err := c.Start(ctx); err != nil {
			return nil, err
		}
	}
	if err := createDatabase(ctx, c.URL("postgres"), "vectabase"); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to the dev cluster: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// ensureMasterKey creates the local KEK file (32 random bytes, base64,
// mode 0600) if it does not exist yet.
func ensureMasterKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create master key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return err
	}
	fmt.Fprintln(os.Stderr, "vectabase: created the local master key", path, "(keep it safe: without it the data cannot be decrypted)")
	return f.Close()
}

func writeDevEnv(vars map[string]string) error {
	path := filepath.Join(devDir, "dev.env")
	tmp := path + ".tmp"
	content, err := godotenv.Marshal(vars)
	if err != nil {
		return err
	}
	header := "# Written by `vectabase dev`: other vectabase commands run in this directory use these settings.\n"
	if err := os.WriteFile(tmp, []byte(header+content+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// devDataDir returns the cluster's data directory, ./.vectabase/pg. As root
// the server runs as postgres, which must be able to reach it; when a
// parent directory is closed to postgres (a private home, a test's temp
// dir), the data lives in postgres's home instead and ./.vectabase/pg is a
// symbolic link to it, rather than opening the parent to everyone.
func devDataDir() (string, error) {
	link := filepath.Join(devDir, "pg")
	if target, err := filepath.EvalSymlinks(link); err == nil {
		return target, nil
	}
	abs, err := filepath.Abs(link)
	if err != nil {
		return "", err
	}
	if os.Geteuid() != 0 || pgcluster.Reachable(filepath.Dir(abs)) {
		return abs, nil
	}
	home, err := pgcluster.PostgresHome()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	target := filepath.Join(home, "vectabase-dev", hex.EncodeToString(sum[:8]), "pg")
	for _, d := range []string{filepath.Join(home, "vectabase-dev"), filepath.Dir(target)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", d, err)
		}
		if err := pgcluster.ChownToPostgres(d); err != nil {
			return "", err
		}
	}
	if err := os.Symlink(target, link); err != nil {
		return "", fmt.Errorf("link %s to %s: %w", link, target, err)
	}
	fmt.Fprintf(os.Stderr, "vectabase: a parent of %s is closed to the postgres user; the dev cluster lives in %s (linked from %s)\n", filepath.Dir(abs), target, link)
	return target, nil
}
