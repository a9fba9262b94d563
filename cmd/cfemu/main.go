// Command cfemu runs an emulated Cloudflare account (D1 REST API on real SQLite
// files) so cfbackup can be demonstrated and disaster-recovery drills rehearsed
// without a Cloudflare account. See docs/CFEMU.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/internal/buildinfo"
	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/seed"
)

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }

// options holds cfemu's flags.
type options struct {
	listen, dataDir, accountID, envFile, seedName string
	d1                                            []string
	do                                            []string
	workerURL                                     string
	seedUsers                                     int
	exactIntegers                                 bool
	seedWorkers                                   bool
	kv                                            []string
}

// Main runs cfemu and returns the process exit code (0 ok, 1 error, 2 usage).
func Main(args []string, stdout, stderr io.Writer) int {
	var o options
	bi := buildinfo.Get()
	cmd := &cobra.Command{
		Use:   "cfemu",
		Short: "Run an emulated Cloudflare account (D1 REST API backed by local SQLite files)",
		Long: `cfemu serves the Cloudflare REST endpoints cfbackup uses for D1 — list, get, create,
delete, export (polling + signed URL), import (init/upload/ingest/poll), query, raw and
Time Travel — on top of real SQLite files in --data-dir. With --do it also lists Durable
Object namespaces and objects, read from a local workerd's persisted state (wrangler dev
--persist-to, miniflare), so 'cfbackup backup --component do' runs against a local Worker. It prints the environment a
shell needs to point cfbackup at it, then serves until SIGINT/SIGTERM.

The API token comes from CFEMU_TOKEN (default: a random one, printed; this is a fake account).
CFEMU_LIMITED_TOKENS="tok:D1 Read,Workers Scripts Read;tok2:…" adds tokens holding only those
permission groups (cfbackup doctor shows what they lack).
Fault switches (environment):
  CFEMU_FAULT_429=N        next N API requests get 429 with Retry-After
  CFEMU_FAULT_5XX=N        next N API requests get 500
  CFEMU_SIGNED_URL_TTL=30s lifetime of export download URLs (default 1h)
  CFEMU_EXPORT_POLLS=N     "active" replies before an export completes (default 1)

Example:
  cfemu --listen 127.0.0.1:0 --data-dir ./emu --seed appdb --seed-users 1000 \
        --d1 billing=./billing.sqlite --env-file ./emu.env &
  sleep 1; . ./emu.env
  cfbackup backup --component d1

Exit status: 0 after a clean shutdown, 1 on error, 2 on bad usage.`,
		Example:       "  cfemu --listen 127.0.0.1:8787 --seed appdb --env-file emu.env",
		Version:       bi.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o, stdout, stderr)
		},
	}
	cmd.SetVersionTemplate(versionLine(bi))
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory holding the databases (default: a new temporary directory)")
	f.StringVar(&o.accountID, "account-id", "023e105f4ecef8ad9ca31a8372d0c353", "emulated account ID")
	f.StringArrayVar(&o.d1, "d1", nil, "add a database: NAME=path.sqlite (copied) or NAME=script.sql (executed); repeatable")
	f.StringVar(&o.seedName, "seed", "", "add a generated OIDC-style demo database with this name")
	f.IntVar(&o.seedUsers, "seed-users", 1000, "users in the --seed database")
	f.StringVar(&o.envFile, "env-file", "", "also write the export lines to this file once the server is up")
	f.BoolVar(&o.seedWorkers, "seed-workers", false, "add an example Workers configuration (scripts \"app\" and \"cron\" with vars, secrets, bindings, cron triggers, a route, a custom domain; an R2 bucket and a Durable Object namespace)")
	f.StringArrayVar(&o.do, "do", nil, "add a Durable Object namespace whose objects are listed from a local workerd's state: SCRIPT/CLASS=PERSIST_DIR[,kv]; repeatable (see docs/DURABLE_OBJECTS.md)")
	f.StringArrayVar(&o.kv, "kv", nil, "add a Workers KV namespace: TITLE, or TITLE=N to fill a new one with N generated keys; repeatable (docs/KV.md)")
	f.StringVar(&o.workerURL, "worker-url", "", "also print CFBACKUP_WORKER_URL=URL (the local Worker serving those namespaces)")
	f.BoolVar(&o.exactIntegers, "exact-integers", false, "export integers beyond 2^53 exactly (real D1 rounds them through a double)")
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(stderr, "cfemu:", err)
		if errors.Is(err, errUsage) || strings.Contains(err.Error(), "flag") || strings.Contains(err.Error(), "unknown") {
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// versionLine is what --version prints: the same build info as `cfbackup version`, so an emulator
// can be matched to the cfbackup release it came with.
func versionLine(bi buildinfo.Info) string {
	commit, date := bi.Commit, bi.Date
	if commit == "" {
		commit = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("cfemu %s (commit %s, built %s, %s, %s)\n", bi.Version, commit, date, bi.GoVersion, bi.Platform)
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	opts := cftest.Options{AccountID: o.accountID, Token: os.Getenv("CFEMU_TOKEN"), DataDir: o.dataDir,
		Faults: cftest.FaultsFromEnv(), ExactIntegers: o.exactIntegers}
	if v := os.Getenv("CFEMU_SIGNED_URL_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%w: CFEMU_SIGNED_URL_TTL: %v", errUsage, err)
		}
		opts.SignedURLTTL = d
	}
	if v := os.Getenv("CFEMU_EXPORT_POLLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%w: CFEMU_EXPORT_POLLS: %v", errUsage, err)
		}
		opts.ExportPolls = n
	}
	if opts.Token == "" {
		b := make([]byte, 20)
		_, _ = rand.Read(b)
		opts.Token = "cfemu_" + hex.EncodeToString(b)
	}
	if opts.DataDir == "" {
		d, err := os.MkdirTemp("", "cfemu-")
		if err != nil {
			return err
		}
		opts.DataDir = d
		fmt.Fprintln(stderr, "cfemu: data in", d)
	}
	srv, err := cftest.New(opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.AddTokensSpec(os.Getenv("CFEMU_LIMITED_TOKENS")); err != nil {
		return fmt.Errorf("%w: CFEMU_LIMITED_TOKENS: %v", errUsage, err)
	}
	for _, spec := range o.d1 {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("%w: --d1 wants NAME=path, got %q", errUsage, spec)
		}
		if _, err := srv.AddDatabase(name, path); err != nil && !errors.Is(err, cftest.ErrDuplicateName) {
			return err
		}
	}
	for _, spec := range o.do {
		ns, dir, err := parseDOSpec(spec)
		if err != nil {
			return err
		}
		srv.AddNamespace(ns)
		srv.SetObjectLister(ns.ID, cftest.ObjectsFromState(dir))
	}
	if o.seedName != "" {
		p := filepath.Join(opts.DataDir, "seed-"+o.seedName+".sqlite")
		if _, err := os.Stat(p); err != nil {
			if _, err := seed.Generate(ctx, p, seed.Options{Users: o.seedUsers, Seed: 1}); err != nil {
				return err
			}
		}
		if _, err := srv.AddDatabase(o.seedName, p); err != nil && !errors.Is(err, cftest.ErrDuplicateName) {
			return err
		}
	}
	if o.seedWorkers {
		srv.SeedWorkersExample()
	}
	if err := seedKV(srv, o.kv); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	srv.SetBaseURL(base)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	env := fmt.Sprintf("export CFBACKUP_CLOUDFLARE_API_URL=%s/client/v4\nexport CLOUDFLARE_ACCOUNT_ID=%s\nexport CLOUDFLARE_API_TOKEN=%s\n",
		base, opts.AccountID, opts.Token)
	if o.workerURL != "" {
		env += fmt.Sprintf("export CFBACKUP_WORKER_URL=%s\n", o.workerURL)
	}
	fmt.Fprint(stdout, env)
	if o.envFile != "" {
		tmp := o.envFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(env), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, o.envFile); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	case err := <-errc:
		return err
	}
}
