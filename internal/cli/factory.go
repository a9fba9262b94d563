package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/open"
)

// Factory hands commands their dependencies lazily: nothing is opened until a command asks.
type Factory struct {
	IO     IO
	Getenv func(string) string

	configFile string
	jsonOut    bool
	noProgress bool
	environ    []string // the process environment (strict CFBACKUP_* check); nil in in-process tests
	args       []string // the command line (deprecated flag names)

	cfg *config.Config
	log *slog.Logger

	// Hooks (hooks.go): the run's state, and what the command published (SetResult).
	run    runState
	result *RunResult
}

// load reads the configuration once the flags are parsed (root PersistentPreRunE).
func (f *Factory) load(cmd *cobra.Command) error {
	if f.environ != nil {
		if err := config.CheckEnviron(f.environ); err != nil {
			return err
		}
	}
	cfg, err := config.Load(f.configFile, cmd.Flags(), f.Getenv)
	if err != nil {
		return err
	}
	f.cfg = cfg
	f.setupOutput(cmd)
	return nil
}

// Config is the loaded configuration.
func (f *Factory) Config() *config.Config { return f.cfg }

// Log is the stderr logger.
func (f *Factory) Log() *slog.Logger {
	if f.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.log
}

// Store opens the configured repository location (not checking that a repository is there).
func (f *Factory) Store(ctx context.Context) (store.Store, error) {
	c := f.cfg
	if err := c.RequireRepository(); err != nil {
		return nil, err
	}
	return open.Open(ctx, c.Repository, open.Options{
		S3Endpoint:      c.S3Endpoint,
		S3Region:        c.S3Region,
		AccessKeyID:     c.AWSAccessKeyID,
		SecretAccessKey: c.AWSSecretAccessKey,
		SessionToken:    c.AWSSessionToken,
		PathStyle:       c.S3PathStyle,
	})
}

// ReplicaStore opens a replica named in the configuration (replicas.NAME) or, failing that, a location
// given directly (a path, file:// or s3:// with the main S3 settings).
func (f *Factory) ReplicaStore(ctx context.Context, nameOrLocation string) (store.Store, error) {
	c := f.cfg
	r, ok := c.Replicas[nameOrLocation]
	if !ok {
		r = config.Replica{Repository: nameOrLocation, S3Endpoint: c.S3Endpoint, S3Region: c.S3Region, S3PathStyle: c.S3PathStyle}
	}
	env := func(k, fallback string) string {
		if ok {
			if v := f.Getenv("CFBACKUP_REPLICA_" + strings.ToUpper(strings.ReplaceAll(nameOrLocation, "-", "_")) + "_" + k); v != "" {
				return v
			}
		}
		return fallback
	}
	return open.Open(ctx, r.Repository, open.Options{
		S3Endpoint:      r.S3Endpoint,
		S3Region:        r.S3Region,
		AccessKeyID:     env("AWS_ACCESS_KEY_ID", c.AWSAccessKeyID),
		SecretAccessKey: env("AWS_SECRET_ACCESS_KEY", c.AWSSecretAccessKey),
		SessionToken:    env("AWS_SESSION_TOKEN", c.AWSSessionToken),
		PathStyle:       r.S3PathStyle,
	})
}

// Repo opens the repository and authenticates it with whatever key this host holds (see OpenRepo).
func (f *Factory) Repo(ctx context.Context) (*repo.Repo, error) {
	st, err := f.Store(ctx)
	if err != nil {
		return nil, err
	}
	return f.OpenRepo(ctx, st)
}

// OpenRepo opens the repository in st and authenticates config.json with the writer secret — from
// writer_key_file, the file 'init' wrote for this repository, or keys/writer.age unwrapped with the
// configured identity — checked against repository_key_id when pinned. A host with no key gets the
// repository unauthenticated: it can list (marked unchecked) but not choose, restore or write
// snapshots (repo.RequireKey). A configuration that does not authenticate is refused (exit 6).
func (f *Factory) OpenRepo(ctx context.Context, st store.Store) (*repo.Repo, error) {
	return f.openRepo(ctx, st, false)
}

// openReplicaRepo opens a copy destination: like OpenRepo, but writer_key_file (the main
// repository's secret) is not tried; the replica's own file (by its id) or the identity is.
func (f *Factory) openReplicaRepo(ctx context.Context, st store.Store) (*repo.Repo, error) {
	return f.openRepo(ctx, st, true)
}

func (f *Factory) openRepo(ctx context.Context, st store.Store, replica bool) (*repo.Repo, error) {
	r, err := repo.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	secret, err := writerSecret(ctx, f, r, replica)
	if err != nil {
		return nil, err
	}
	pin := strings.TrimSpace(f.cfg.RepositoryKeyID)
	if secret == nil {
		if pin != "" {
			return nil, fmt.Errorf("%w: repository_key_id is pinned on this host, so it must check the repository: %s", repo.ErrNoKey, r.RequireKey("this host").Error())
		}
		if r.Legacy() {
			f.Log().Warn("repository format 1: its configuration and snapshots are not authenticated; upgrade it with 'cfbackup migrate'", "repository", st.Location())
		}
		return r, nil
	}
	if err := r.Authenticate(secret, repo.AuthOptions{KeyID: pin}); err != nil {
		return nil, err
	}
	if r.Legacy() {
		f.Log().Warn("repository format 1: its configuration and snapshots are not authenticated; upgrade it with 'cfbackup migrate'", "repository", st.Location())
	}
	return r, nil
}

// Identities reads the identity file; required reports whether its absence is an error.
func (f *Factory) Identities(required bool) ([]age.Identity, error) {
	path := f.cfg.IdentityFile
	if path == "" {
		if required {
			return nil, fmt.Errorf("%w: this command decrypts data and needs an identity: pass --identity-file FILE or set CFBACKUP_IDENTITY_FILE (make one with 'cfbackup key generate')", engine.ErrKey)
		}
		return nil, nil
	}
	ids, err := keys.ReadIdentityFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", engine.ErrKey, err)
	}
	if err := keys.CheckPermissions(path); err != nil {
		f.Log().Warn("identity file permissions", "path", path, "warning", err)
	}
	return ids, nil
}

// pinnedRecipients are the recipients this host was configured with (recipients, recipients_file):
// on a backup host they pin what the repository may list (repo.CheckRecipients).
func (f *Factory) pinnedRecipients() []string {
	out := append([]string{}, f.cfg.Recipients...)
	if f.cfg.RecipientsFile != "" {
		if more, err := readRecipientLines(f.cfg.RecipientsFile); err == nil {
			out = append(out, more...)
		} else {
			// Unreadable pin file: pin something that matches nothing, so the backup is refused.
			out = append(out, "unreadable recipients_file "+f.cfg.RecipientsFile)
		}
	}
	return out
}

// Cloudflare builds the API client from the environment (token) and configuration.
func (f *Factory) Cloudflare() (*cloudflare.Client, error) {
	return cloudflare.New(cloudflare.Config{
		AccountID: f.cfg.CloudflareAccountID,
		APIToken:  f.cfg.CloudflareAPIToken,
		BaseURL:   f.cfg.CloudflareAPIURL,
	})
}

// Engine binds an opened repository to logging and progress.
func (f *Factory) Engine(r *repo.Repo) *engine.Engine {
	return &engine.Engine{Repo: r, Log: f.Log(), Progress: f.progress(), Tool: "cfbackup " + Version, PinnedRecipients: f.pinnedRecipients()}
}

func (f *Factory) progress() engine.Progress {
	if f.noProgress || f.jsonOut || !isTerminal(f.IO.Err) {
		return nil
	}
	return &barProgress{w: f}
}

// barProgress shows a progressbar/v3 bar on stderr (terminals only).
type barProgress struct {
	w   *Factory
	bar *progressbar.ProgressBar
}

func (b *barProgress) Start(label string, total int64) {
	if total <= 0 {
		total = -1
	}
	b.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(b.w.IO.Err),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)
}

func (b *barProgress) Add(n int) {
	if b.bar != nil {
		_ = b.bar.Add(n)
	}
}

func (b *barProgress) Finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
		b.bar = nil
	}
}
