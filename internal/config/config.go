// Package config turns the config file, CFBACKUP_* environment variables and flags into one typed,
// validated Config. It is the only place that touches viper (a fresh viper.New() per run, never the
// global), so precedence is defined once: flag > environment > config file > default.
//
// Secrets (API tokens, S3 keys, age identities) are never read from flags or the config file: they come
// from the environment or from files whose paths are configured here.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/s3api"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// ErrInvalid: a setting has a bad value; the message names the setting and the fix.
var ErrInvalid = errclass.New(errclass.Usage, "invalid configuration")

// Config is every non-secret setting, plus the secrets read from the environment.
type Config struct {
	Repository     string   `mapstructure:"repository"`
	IdentityFile   string   `mapstructure:"identity_file"`
	Recipients     []string `mapstructure:"recipients"`
	RecipientsFile string   `mapstructure:"recipients_file"`
	WriterKeyFile  string   `mapstructure:"writer_key_file"`
	// RepositoryKeyID pins the writer secret's key id ("wk:…", printed by init and list): a host that
	// unwraps keys/writer.age with its identity refuses a repository whose secret was replaced.
	RepositoryKeyID string `mapstructure:"repository_key_id"`

	S3Endpoint  string `mapstructure:"s3_endpoint"`
	S3Region    string `mapstructure:"s3_region"`
	S3PathStyle bool   `mapstructure:"s3_path_style"`

	CloudflareAccountID string `mapstructure:"cloudflare_account_id"`
	CloudflareAPIURL    string `mapstructure:"cloudflare_api_url"`

	// R2 source (component r2): S3 endpoint (default https://<account>.r2.cloudflarestorage.com) and
	// parallel object GETs (0: the default, 8).
	R2Endpoint    string `mapstructure:"r2_endpoint"`
	R2Concurrency int    `mapstructure:"r2_concurrency"`
	// Concurrency bounds the captures (D1 databases, DO namespaces, R2 buckets, components) one
	// backup runs at once (--concurrency; 0: the default, 4; 1: one after another).
	Concurrency int `mapstructure:"concurrency"`
	// WorkerURL is the application Worker that routes /__cfbackup/ to its Durable Objects (--component do).
	WorkerURL string `mapstructure:"worker_url"`
	// WorkerSecretFile holds the Worker module's secret (alternative to CFBACKUP_WORKER_SECRET).
	WorkerSecretFile string `mapstructure:"worker_secret_file"`
	// TestRestoreWorkerURL is a local Workers runtime of the application that test-restore imports
	// sampled Durable Objects into (CFBACKUP_TEST_RESTORE_WORKER_URL); never the production Worker.
	TestRestoreWorkerURL string `mapstructure:"test_restore_worker_url"`

	// StorageClass is the S3 storage class of new segments (backup --storage-class); Components
	// overrides it per component (components.<name>.storage_class). docs/STORAGE_CLASSES.md.
	StorageClass string                       `mapstructure:"storage_class"`
	Components   map[string]ComponentSettings `mapstructure:"components"`

	SegmentSize int64  `mapstructure:"segment_size"`
	ChunkSize   int    `mapstructure:"chunk_size"`
	LogLevel    string `mapstructure:"log_level"`
	// LogFormat is how log lines on stderr look: text (default) or json (one object per line).
	LogFormat string `mapstructure:"log_format"`
	// Quiet prints errors only (cron); Verbose logs at debug level. They exclude each other.
	Quiet   bool `mapstructure:"quiet"`
	Verbose bool `mapstructure:"verbose"`

	// TestRestore holds the checks test-restore runs on every restored D1 database.
	TestRestore TestRestore `mapstructure:"test_restore"`

	// Replicas are other repositories that 'copy --to NAME' and 'backup --copy-to NAME' replicate to.
	Replicas map[string]Replica `mapstructure:"replicas"`

	// Notifications and metrics after backup, verify, test-restore and prune (docs/NOTIFICATIONS.md).
	// The webhook URL embeds a token, so it is a secret: CFBACKUP_NOTIFY_WEBHOOK only.
	NotifyOn        string `mapstructure:"notify_on"`
	SMTPHost        string `mapstructure:"smtp_host"`
	SMTPPort        int    `mapstructure:"smtp_port"`
	SMTPUsername    string `mapstructure:"smtp_username"`
	SMTPFrom        string `mapstructure:"smtp_from"`
	SMTPTo          string `mapstructure:"smtp_to"` // comma-separated
	MetricsTextfile string `mapstructure:"metrics_textfile"`
	MetricsPush     string `mapstructure:"metrics_push"`

	// SigningKeyFile is this operator's ed25519 signing key (approvers keygen): it signs approvals
	// and, for an admin, approver registrations (docs/APPROVAL.md). Env CFBACKUP_SIGNING_KEY_FILE.
	SigningKeyFile string `mapstructure:"signing_key_file"`
	// Approval protects restore targets with two-person approval and the test-restore gate.
	Approval Approval `mapstructure:"approval"`

	// Retention is the config file's `retention:` block (docs/RETENTION.md); Validate checks it and
	// RetentionPolicies parses it.
	Retention map[string]any `mapstructure:"retention"`

	// Secrets: environment only.
	CloudflareAPIToken string `mapstructure:"-"`
	AWSAccessKeyID     string `mapstructure:"-"`
	AWSSecretAccessKey string `mapstructure:"-"`
	AWSSessionToken    string `mapstructure:"-"`
	SMTPPassword       string `mapstructure:"-"` // CFBACKUP_SMTP_PASSWORD
	NotifyWebhook      string `mapstructure:"-"` // CFBACKUP_NOTIFY_WEBHOOK
	R2AccessKeyID      string `mapstructure:"-"`
	R2SecretAccessKey  string `mapstructure:"-"`
	WorkerSecret       string `mapstructure:"-"` // CFBACKUP_WORKER_SECRET
	// TestRestoreWorkerSecret signs requests to TestRestoreWorkerURL (CFBACKUP_TEST_RESTORE_WORKER_SECRET).
	TestRestoreWorkerSecret string `mapstructure:"-"`

	// File is the config file that was read, if any.
	File string `mapstructure:"-"`
}

// ComponentSettings is one entry of the config file's components: block.
type ComponentSettings struct {
	// StorageClass overrides the repository's storage_class for this component's segments.
	StorageClass string `mapstructure:"storage_class"`
}

// ComponentClasses maps component names to the storage class set for them (non-empty only).
func (c *Config) ComponentClasses() map[string]string {
	out := map[string]string{}
	for name, cs := range c.Components {
		if cs.StorageClass != "" {
			out[name] = cs.StorageClass
		}
	}
	return out
}

// checkStorageClasses checks (and normalises) storage_class and components.*.storage_class against
// the classes the repository's store has: R2's two when the S3 endpoint is R2's, S3's otherwise.
func (c *Config) checkStorageClasses() error {
	r2 := s3api.IsR2(c.S3Endpoint)
	sc, err := store.CheckStorageClass(c.StorageClass, r2)
	if err != nil {
		return fmt.Errorf("%w: storage_class (--storage-class, CFBACKUP_STORAGE_CLASS): %w", ErrInvalid, err)
	}
	c.StorageClass = sc
	for name, cs := range c.Components {
		v, err := store.CheckStorageClass(cs.StorageClass, r2)
		if err != nil {
			return fmt.Errorf("%w: components.%s.storage_class: %w", ErrInvalid, name, err)
		}
		cs.StorageClass = v
		c.Components[name] = cs
	}
	return nil
}

// Approval is the approval block of the config file (docs/APPROVAL.md).
type Approval struct {
	// Protected lists the targets a restore into needs an approved plan for, per component, by
	// name or shell pattern (path.Match: "prod-*").
	Protected ProtectedTargets `mapstructure:"protected"`
	// TrustedKeys pins the public keys (cfbackup-ed25519-pub:…) of the admins whose approver
	// registrations this host accepts: the trust root is this file, never the repository.
	TrustedKeys []string `mapstructure:"trusted_keys"`
	// PlanTTL is how long a written plan may wait for approval and execution (default 24h).
	PlanTTL string `mapstructure:"plan_ttl"`
	// RequireTestRestore holds protected restores until a test-restore of the snapshot passed.
	RequireTestRestore bool `mapstructure:"require_test_restore"`
	// TestRestoreWithin also accepts a passing test-restore, run within this long, of another
	// snapshot holding the same source ("7d"; empty: only the snapshot being restored counts).
	TestRestoreWithin string `mapstructure:"test_restore_within"`
}

// ProtectedTargets are the protected targets by component.
type ProtectedTargets struct {
	D1 []string `mapstructure:"d1"`
	DO []string `mapstructure:"do"`
	R2 []string `mapstructure:"r2"`
}

// TestRestore is the test_restore block of the config file.
type TestRestore struct {
	Assertions []Assertion `mapstructure:"assertions"`
}

// Assertion is one SQL check: the first value of the first row compared with Expect (">= 1000").
type Assertion struct {
	Database string `mapstructure:"database"`
	SQL      string `mapstructure:"sql"`
	Expect   string `mapstructure:"expect"`
}

// Replica is a second repository (another region, jurisdiction or provider). Its S3 keys come from
// CFBACKUP_REPLICA_<NAME>_AWS_ACCESS_KEY_ID / _AWS_SECRET_ACCESS_KEY / _AWS_SESSION_TOKEN, else the
// main AWS_* variables.
type Replica struct {
	Repository  string `mapstructure:"repository"`
	S3Endpoint  string `mapstructure:"s3_endpoint"`
	S3Region    string `mapstructure:"s3_region"`
	S3PathStyle bool   `mapstructure:"s3_path_style"`
}

// Load reads the config file (explicit path, or cfbackup.yaml in the working directory or the user's
// config directory), then CFBACKUP_* variables, then the flags that were set on the command line.
// getenv is injected so tests and in-process scripts control the environment.
func Load(file string, flags *pflag.FlagSet, getenv func(string) string) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	setDefaults(v)
	file, err := readFile(v, file, getenv)
	if err != nil {
		return nil, err
	}
	applyEnv(v, getenv)
	applyFlags(v, flags)
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.File = file
	c.fromEnv(getenv)
	return &c, c.Validate()
}

// setDefaults gives every key a default, so that CFBACKUP_<KEY> and flags find it (viper only binds
// keys it knows).
func setDefaults(v *viper.Viper) {
	// No default repository: under cron a relative default lands in $HOME or /; commands that need
	// one say how to set it (ErrNoRepository).
	v.SetDefault("repository", "")
	v.SetDefault("log_level", "info")
	v.SetDefault("log_format", "")
	v.SetDefault("quiet", false)
	v.SetDefault("verbose", false)
	v.SetDefault("segment_size", int64(512<<20))
	v.SetDefault("chunk_size", archive.DefaultChunkSize)
	v.SetDefault("s3_path_style", false)
	for _, k := range []string{"signing_key_file", "identity_file", "recipients_file", "writer_key_file", "repository_key_id", "s3_endpoint", "s3_region", "cloudflare_account_id", "cloudflare_api_url", "worker_url", "worker_secret_file"} {
		v.SetDefault(k, "")
	}
	v.SetDefault("recipients", []string{})
	for _, k := range []string{"notify_on", "smtp_host", "smtp_username", "smtp_from", "smtp_to", "metrics_textfile", "metrics_push"} {
		v.SetDefault(k, "")
	}
	v.SetDefault("smtp_port", 0) // 0: 587 (STARTTLS when offered); 465 is TLS from the start
	v.SetDefault("r2_endpoint", "")
	v.SetDefault("r2_concurrency", 0)
	v.SetDefault("concurrency", 0)
	v.SetDefault("test_restore_worker_url", "")
	v.SetDefault("storage_class", "")
}

// readFile reads the explicit config file (or CFBACKUP_CONFIG), else the first candidate that exists,
// and returns the path read ("" for none).
func readFile(v *viper.Viper, file string, getenv func(string) string) (string, error) {
	if file == "" {
		file = getenv("CFBACKUP_CONFIG")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: config file %s: %v", ErrInvalid, file, err)
		}
		return file, readConfig(v, file, b)
	}
	for _, cand := range candidates(getenv) {
		if b, err := os.ReadFile(cand); err == nil {
			return cand, readConfig(v, cand, b)
		}
	}
	return "", nil
}

// readConfig reads the file's YAML into v, after checking every key of it against Config (strict.go).
func readConfig(v *viper.Viper, file string, b []byte) error {
	raw := viper.New()
	raw.SetConfigType("yaml")
	if err := raw.ReadConfig(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("%w: config file %s: %v", ErrInvalid, file, err)
	}
	if err := checkKeys(file, raw.AllSettings()); err != nil {
		return err
	}
	if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("%w: config file %s: %v", ErrInvalid, file, err)
	}
	return nil
}

// applyEnv sets CFBACKUP_<KEY> variables (read through getenv so tests can inject them) and the few
// settings that have well-known names of their own.
func applyEnv(v *viper.Viper, getenv func(string) string) {
	for _, k := range v.AllKeys() {
		if val := getenv("CFBACKUP_" + strings.ToUpper(k)); val != "" {
			if k == "recipients" {
				v.Set(k, splitList(val))
			} else {
				v.Set(k, val)
			}
		}
	}
	if v.GetString("cloudflare_account_id") == "" {
		v.Set("cloudflare_account_id", getenv("CLOUDFLARE_ACCOUNT_ID"))
	}
	if v.GetString("s3_region") == "" {
		v.Set("s3_region", getenv("AWS_REGION"))
	}
}

// applyFlags sets the settings whose flags were given explicitly: they win over file and env.
func applyFlags(v *viper.Viper, flags *pflag.FlagSet) {
	if flags == nil {
		return
	}
	flags.VisitAll(func(fl *pflag.Flag) {
		if !fl.Changed {
			return
		}
		key := strings.ReplaceAll(fl.Name, "-", "_")
		switch key {
		case "repo":
			key = "repository"
		case "recipient":
			key = "recipients"
		case "debug":
			key = "verbose"
		}
		if !v.IsSet(key) && !isKnown(v, key) {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			v.Set(key, sv.GetSlice())
			return
		}
		v.Set(key, fl.Value.String())
	})
}

// fromEnv reads the secrets, which come only from the environment (never a file or a flag), and
// derives what follows from the rest.
func (c *Config) fromEnv(getenv func(string) string) {
	c.CloudflareAPIToken = getenv("CLOUDFLARE_API_TOKEN")
	c.AWSAccessKeyID = getenv("AWS_ACCESS_KEY_ID")
	c.AWSSecretAccessKey = getenv("AWS_SECRET_ACCESS_KEY")
	c.AWSSessionToken = getenv("AWS_SESSION_TOKEN")
	c.SMTPPassword = getenv("CFBACKUP_SMTP_PASSWORD")
	c.NotifyWebhook = getenv("CFBACKUP_NOTIFY_WEBHOOK")
	c.R2AccessKeyID = getenv("CFBACKUP_R2_ACCESS_KEY_ID")
	c.R2SecretAccessKey = getenv("CFBACKUP_R2_SECRET_ACCESS_KEY")
	if c.R2Endpoint == "" && c.CloudflareAccountID != "" {
		c.R2Endpoint = "https://" + c.CloudflareAccountID + ".r2.cloudflarestorage.com"
	}
	c.WorkerSecret = getenv("CFBACKUP_WORKER_SECRET")
	c.TestRestoreWorkerSecret = getenv("CFBACKUP_TEST_RESTORE_WORKER_SECRET")
	if c.CloudflareAPIURL == "" {
		c.CloudflareAPIURL = getenv("CLOUDFLARE_BASE_URL")
	}
}

// Validate checks values that can be checked without touching the network.
func (c *Config) Validate() error {
	if c.Repository != "" && strings.TrimSpace(c.Repository) == "" {
		return fmt.Errorf("%w: repository is blank: give a path or s3://BUCKET/PREFIX with --repo or CFBACKUP_REPOSITORY", ErrInvalid)
	}
	if c.SegmentSize < 1<<20 {
		return fmt.Errorf("%w: segment_size %d is below 1 MiB", ErrInvalid, c.SegmentSize)
	}
	if c.ChunkSize < 64<<10 || c.ChunkSize > 256<<20 {
		return fmt.Errorf("%w: chunk_size %d must be between 64 KiB and 256 MiB", ErrInvalid, c.ChunkSize)
	}
	for i, a := range c.TestRestore.Assertions {
		if strings.TrimSpace(a.SQL) == "" {
			return fmt.Errorf("%w: test_restore.assertions[%d] has no sql", ErrInvalid, i)
		}
	}
	for name, r := range c.Replicas {
		if strings.TrimSpace(r.Repository) == "" {
			return fmt.Errorf("%w: replicas.%s.repository is empty: give the replica's location (a path or s3://bucket/prefix)", ErrInvalid, name)
		}
	}
	if c.R2Concurrency < 0 || c.R2Concurrency > 256 {
		return fmt.Errorf("%w: r2_concurrency %d must be between 1 and 256 (0 means the default, 8)", ErrInvalid, c.R2Concurrency)
	}
	if c.Concurrency < 0 || c.Concurrency > 64 {
		return fmt.Errorf("%w: concurrency %d must be between 1 and 64 (0 means the default, 4)", ErrInvalid, c.Concurrency)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("%w: log_level %q: use debug, info, warn or error", ErrInvalid, c.LogLevel)
	}
	switch strings.ToLower(c.LogFormat) {
	case "", "text", "json":
	default:
		return fmt.Errorf("%w: log_format %q: use text or json", ErrInvalid, c.LogFormat)
	}
	if c.Quiet && c.Verbose {
		return fmt.Errorf("%w: quiet and verbose both set: choose one (-q for cron, --verbose to investigate)", ErrInvalid)
	}
	if _, err := c.RetentionPolicies(); err != nil {
		return err
	}
	if _, err := c.ApprovalPolicy(); err != nil {
		return err
	}
	return c.checkStorageClasses()
}

func isKnown(v *viper.Viper, key string) bool {
	for _, k := range v.AllKeys() {
		if k == key {
			return true
		}
	}
	return false
}

func candidates(getenv func(string) string) []string {
	out := []string{"cfbackup.yaml"}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		out = append(out, filepath.Join(d, "cfbackup", "cfbackup.yaml"))
	} else if h := getenv("HOME"); h != "" {
		out = append(out, filepath.Join(h, ".config", "cfbackup", "cfbackup.yaml"))
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// RetentionPolicies parses the `retention:` block; errors wrap ErrInvalid and retention.ErrPolicy.
func (c *Config) RetentionPolicies() (retention.Policies, error) {
	ps, err := retention.ParseConfig(c.Retention)
	if err != nil {
		return ps, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return ps, nil
}

// ErrNoRepository: nothing named a repository. There is no implicit default: a relative one would
// resolve to $HOME or / under cron, far from where the operator looks.
var ErrNoRepository = errclass.New(errclass.Usage, "no repository")

// RequireRepository reports ErrNoRepository, saying where to set one, when no repository is set.
func (c *Config) RequireRepository() error {
	if strings.TrimSpace(c.Repository) != "" {
		return nil
	}
	where := "a config file (./cfbackup.yaml, ~/.config/cfbackup/cfbackup.yaml or --config FILE)"
	if c.File != "" {
		where = c.File
	}
	return fmt.Errorf("%w: set --repo (or --repository), CFBACKUP_REPOSITORY or `repository:` in %s", ErrNoRepository, where)
}
