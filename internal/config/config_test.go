package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/archive"
)

// flags mirrors the flags the CLI defines that map to settings (internal/cli root.go and init.go),
// plus one that maps to none (--json), and parses args.
func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("cfbackup", pflag.ContinueOnError)
	fs.StringP("repo", "r", "", "")
	fs.String("identity-file", "", "")
	fs.String("log-level", "", "")
	fs.Bool("json", false, "")
	fs.StringSlice("recipient", nil, "")
	fs.String("recipients-file", "", "")
	fs.String("writer-key-file", "", "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// envOf is an injected environment. HOME and XDG_CONFIG_HOME point at an empty directory unless set,
// so a developer's own ~/.config/cfbackup/cfbackup.yaml can't leak into a test.
func envOf(t *testing.T, kv ...string) func(string) string {
	t.Helper()
	m := map[string]string{"HOME": t.TempDir()}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cfbackup.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, file string, fs *pflag.FlagSet, getenv func(string) string) *config.Config {
	t.Helper()
	c, err := config.Load(file, fs, getenv)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./cfbackup.yaml
	c := load(t, "", flags(t), envOf(t))
	if c.Repository != "" || c.LogLevel != "info" || c.SegmentSize != 512<<20 || c.ChunkSize != archive.DefaultChunkSize {
		t.Fatalf("defaults: %+v", c)
	}
	if len(c.Recipients) != 0 || c.S3PathStyle || c.S3Endpoint != "" || c.File != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestPrecedence: flag > CFBACKUP_* env > config file > default, setting by setting.
func TestPrecedence(t *testing.T) {
	t.Chdir(t.TempDir())
	file := writeFile(t, `
repository: /from/file
log_level: warn
recipients: [age1file1, age1file2]
s3_endpoint: https://file.example
s3_region: file-region
s3_path_style: true
identity_file: /file/key.txt
segment_size: 2097152
`)
	env := []string{
		"CFBACKUP_REPOSITORY", "/from/env",
		"CFBACKUP_LOG_LEVEL", "error",
		"CFBACKUP_RECIPIENTS", "age1env1, age1env2,,age1env3",
		"CFBACKUP_S3_ENDPOINT", "https://env.example",
		"CFBACKUP_S3_REGION", "env-region",
		"CFBACKUP_S3_PATH_STYLE", "false",
		"CFBACKUP_IDENTITY_FILE", "/env/key.txt",
		"CFBACKUP_SEGMENT_SIZE", "3145728",
	}
	fl := flags(t, "--repo", "/from/flag", "--log-level", "debug", "--recipient", "age1flag1", "--recipient", "age1flag2,age1flag3", "--identity-file", "/flag/key.txt")

	t.Run("default only", func(t *testing.T) {
		c := load(t, "", flags(t), envOf(t))
		if c.Repository != "" || c.LogLevel != "info" {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("file over default", func(t *testing.T) {
		c := load(t, file, flags(t), envOf(t))
		want := config.Config{Repository: "/from/file", LogLevel: "warn", Recipients: []string{"age1file1", "age1file2"},
			S3Endpoint: "https://file.example", S3Region: "file-region", S3PathStyle: true, IdentityFile: "/file/key.txt",
			SegmentSize: 2 << 20, ChunkSize: archive.DefaultChunkSize, File: file}
		if !reflect.DeepEqual(*c, want) {
			t.Fatalf("got  %+v\nwant %+v", *c, want)
		}
	})
	t.Run("env over file", func(t *testing.T) {
		c := load(t, file, flags(t), envOf(t, env...))
		want := config.Config{Repository: "/from/env", LogLevel: "error", Recipients: []string{"age1env1", "age1env2", "age1env3"},
			S3Endpoint: "https://env.example", S3Region: "env-region", S3PathStyle: false, IdentityFile: "/env/key.txt",
			SegmentSize: 3 << 20, ChunkSize: archive.DefaultChunkSize, File: file}
		if !reflect.DeepEqual(*c, want) {
			t.Fatalf("got  %+v\nwant %+v", *c, want)
		}
	})
	t.Run("flag over env", func(t *testing.T) {
		c := load(t, file, fl, envOf(t, env...))
		if c.Repository != "/from/flag" || c.LogLevel != "debug" || c.IdentityFile != "/flag/key.txt" {
			t.Fatalf("%+v", c)
		}
		if want := []string{"age1flag1", "age1flag2", "age1flag3"}; !reflect.DeepEqual(c.Recipients, want) {
			t.Fatalf("recipients %q, want %q", c.Recipients, want)
		}
		// Settings without a flag keep the env value.
		if c.S3Endpoint != "https://env.example" || c.SegmentSize != 3<<20 {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("short flag", func(t *testing.T) {
		c := load(t, file, flags(t, "-r", "/short"), envOf(t, env...))
		if c.Repository != "/short" {
			t.Fatalf("repository %q", c.Repository)
		}
	})
	t.Run("flags that are not settings are ignored", func(t *testing.T) {
		c := load(t, "", flags(t, "--json"), envOf(t))
		if c.Repository != "" {
			t.Fatalf("%+v", c)
		}
	})
}

// TestWellKnownFallbacks: CLOUDFLARE_ACCOUNT_ID, AWS_REGION and CLOUDFLARE_BASE_URL apply only when
// the cfbackup setting is not set anywhere.
func TestWellKnownFallbacks(t *testing.T) {
	t.Chdir(t.TempDir())
	c := load(t, "", nil, envOf(t, "CLOUDFLARE_ACCOUNT_ID", "acct-plain", "AWS_REGION", "eu-west-1", "CLOUDFLARE_BASE_URL", "http://base"))
	if c.CloudflareAccountID != "acct-plain" || c.S3Region != "eu-west-1" || c.CloudflareAPIURL != "http://base" {
		t.Fatalf("fallbacks not used: %+v", c)
	}
	c = load(t, "", nil, envOf(t, "CLOUDFLARE_ACCOUNT_ID", "acct-plain", "CFBACKUP_CLOUDFLARE_ACCOUNT_ID", "acct-cfbackup",
		"AWS_REGION", "eu-west-1", "CFBACKUP_S3_REGION", "auto", "CLOUDFLARE_BASE_URL", "http://base", "CFBACKUP_CLOUDFLARE_API_URL", "http://cfbackup"))
	if c.CloudflareAccountID != "acct-cfbackup" || c.S3Region != "auto" || c.CloudflareAPIURL != "http://cfbackup" {
		t.Fatalf("CFBACKUP_* should win over the well-known names: %+v", c)
	}
	file := writeFile(t, "cloudflare_account_id: acct-file\ns3_region: file-region\n")
	c = load(t, file, nil, envOf(t, "CLOUDFLARE_ACCOUNT_ID", "acct-plain", "AWS_REGION", "eu-west-1"))
	if c.CloudflareAccountID != "acct-file" || c.S3Region != "file-region" {
		t.Fatalf("the config file should win over the well-known names: %+v", c)
	}
}

// TestConfigFileDiscovery: --config, then CFBACKUP_CONFIG, then ./cfbackup.yaml, then the user's
// config directory.
func TestConfigFileDiscovery(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	xdg := t.TempDir()
	if err := os.MkdirAll(filepath.Join(xdg, "cfbackup"), 0o700); err != nil {
		t.Fatal(err)
	}
	userFile := filepath.Join(xdg, "cfbackup", "cfbackup.yaml")
	if err := os.WriteFile(userFile, []byte("repository: /from/user\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := load(t, "", nil, envOf(t, "XDG_CONFIG_HOME", xdg))
	if c.Repository != "/from/user" || c.File != userFile {
		t.Fatalf("user config dir: %+v", c)
	}

	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".config", "cfbackup"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".config", "cfbackup", "cfbackup.yaml"), []byte("repository: /from/home\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = load(t, "", nil, envOf(t, "HOME", home))
	if c.Repository != "/from/home" {
		t.Fatalf("~/.config without XDG_CONFIG_HOME: %+v", c)
	}

	if err := os.WriteFile(filepath.Join(wd, "cfbackup.yaml"), []byte("repository: /from/cwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = load(t, "", nil, envOf(t, "XDG_CONFIG_HOME", xdg))
	if c.Repository != "/from/cwd" {
		t.Fatalf("./cfbackup.yaml should win over the user's: %+v", c)
	}

	envFile := writeFile(t, "repository: /from/env-file\n")
	c = load(t, "", nil, envOf(t, "XDG_CONFIG_HOME", xdg, "CFBACKUP_CONFIG", envFile))
	if c.Repository != "/from/env-file" || c.File != envFile {
		t.Fatalf("CFBACKUP_CONFIG: %+v", c)
	}

	flagFile := writeFile(t, "repository: /from/flag-file\n")
	c = load(t, flagFile, nil, envOf(t, "XDG_CONFIG_HOME", xdg, "CFBACKUP_CONFIG", envFile))
	if c.Repository != "/from/flag-file" || c.File != flagFile {
		t.Fatalf("--config: %+v", c)
	}
}

func TestConfigFileErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := config.Load(missing, nil, envOf(t))
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("--config missing file: %v", err)
	}
	_, err = config.Load("", nil, envOf(t, "CFBACKUP_CONFIG", missing))
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("CFBACKUP_CONFIG missing file: %v", err)
	}
	bad := writeFile(t, "repository: [unclosed\n")
	_, err = config.Load(bad, nil, envOf(t))
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("malformed YAML: %v", err)
	}
}

// TestInvalidValues: Validate (through Load) refuses bad values with a message naming the setting.
func TestInvalidValues(t *testing.T) {
	t.Chdir(t.TempDir())
	cases := []struct {
		name    string
		file    string
		env     []string
		args    []string
		setting string
	}{
		{"log level from env", "", []string{"CFBACKUP_LOG_LEVEL", "loud"}, nil, "log_level"},
		{"log level from flag", "", nil, []string{"--log-level", "trace"}, "log_level"},
		{"empty repository flag", "", nil, []string{"--repo", " "}, "repository"},
		{"log format from env", "", []string{"CFBACKUP_LOG_FORMAT", "xml"}, nil, "log_format"},
		{"quiet and verbose", "quiet: true\nverbose: true\n", nil, nil, "quiet and verbose"},
		{"segment size too small", "segment_size: 1000\n", nil, nil, "segment_size"},
		{"chunk size too small", "", []string{"CFBACKUP_CHUNK_SIZE", "1024"}, nil, "chunk_size"},
		{"chunk size too large", "chunk_size: 1073741824\n", nil, nil, "chunk_size"},
		{"segment size not a number", "", []string{"CFBACKUP_SEGMENT_SIZE", "big"}, nil, "segment_size"},
		{"path style not a bool", "", []string{"CFBACKUP_S3_PATH_STYLE", "sometimes"}, nil, "s3_path_style"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := ""
			if c.file != "" {
				file = writeFile(t, c.file)
			}
			_, err := config.Load(file, flags(t, c.args...), envOf(t, c.env...))
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.setting) {
				t.Fatalf("message does not name %s: %v", c.setting, err)
			}
		})
	}

	// Validate on its own, for callers that build a Config by hand.
	good := config.Config{Repository: "r", LogLevel: "INFO", SegmentSize: 1 << 20, ChunkSize: 64 << 10}
	if err := good.Validate(); err != nil {
		t.Fatalf("smallest valid sizes, upper-case level: %v", err)
	}
	bad := good
	bad.ChunkSize = 64<<10 - 1
	if err := bad.Validate(); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("chunk one byte under 64 KiB: %v", err)
	}
}

// TestSecretsOnlyFromEnvironment: secret keys in the config file or CFBACKUP_* variables are never
// used; the well-known environment variables are.
func TestSecretsOnlyFromEnvironment(t *testing.T) {
	t.Chdir(t.TempDir())
	// A secret in the config file is refused (strict keys), naming the variable to use instead.
	for key, env := range map[string]string{"cloudflare_api_token": "CLOUDFLARE_API_TOKEN", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY"} {
		file := writeFile(t, "repository: /r\n"+key+": secret-from-file\n")
		_, err := config.Load(file, nil, envOf(t))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), key+" is a secret") || !strings.Contains(err.Error(), env) || strings.Contains(err.Error(), "secret-from-file") {
			t.Fatalf("%s in the config file: %v", key, err)
		}
	}
	file := writeFile(t, "repository: /r\n")
	c := load(t, file, nil, envOf(t, "CFBACKUP_CLOUDFLARE_API_TOKEN", "token-from-cfbackup-env"))
	if c.CloudflareAPIToken != "" || c.AWSAccessKeyID != "" || c.AWSSecretAccessKey != "" || c.AWSSessionToken != "" {
		t.Fatalf("secrets taken from CFBACKUP_*: token=%q key=%q secret=%q session=%q",
			c.CloudflareAPIToken, c.AWSAccessKeyID, c.AWSSecretAccessKey, c.AWSSessionToken)
	}
	c = load(t, file, nil, envOf(t, "CLOUDFLARE_API_TOKEN", "token-env", "AWS_ACCESS_KEY_ID", "AKIAENV",
		"AWS_SECRET_ACCESS_KEY", "secret-env", "AWS_SESSION_TOKEN", "session-env"))
	if c.CloudflareAPIToken != "token-env" || c.AWSAccessKeyID != "AKIAENV" || c.AWSSecretAccessKey != "secret-env" || c.AWSSessionToken != "session-env" {
		t.Fatalf("secrets from the environment not used: %+v", c)
	}
}

// TestStrictKeys: a misspelt key, top level or nested, is refused naming the key, the file and the
// nearest valid key; no repository is no default repository.
func TestStrictKeys(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct{ yaml, want string }{
		{"repositry: /r\n", `unknown key "repositry": did you mean "repository"?`},
		{"repository: /r\nreplicas:\n  eu:\n    repository: /eu\n    s3_endpoit: http://x\n", `unknown key "replicas.eu.s3_endpoit": did you mean "replicas.eu.s3_endpoint"?`},
		{"repository: /r\ntest_restore:\n  assertions:\n    - sql: select 1\n      expct: \"= 1\"\n", `unknown key "test_restore.assertions[0].expct": did you mean "test_restore.assertions[0].expect"?`},
		{"Log_Levle: debug\n", `did you mean "log_level"?`},
	} {
		file := writeFile(t, tc.yaml)
		_, err := config.Load(file, nil, envOf(t))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%q: %v, want %s", tc.yaml, err, tc.want)
		}
	}
	// Free-form blocks are their parsers' to check; valid nested keys pass.
	file := writeFile(t, "repository: /r\nreplicas:\n  eu:\n    repository: /eu\nretention:\n  default:\n    keep_last: 3\n")
	if _, err := config.Load(file, nil, envOf(t)); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	c := load(t, "", nil, envOf(t))
	if err := c.RequireRepository(); !errors.Is(err, config.ErrNoRepository) || !strings.Contains(err.Error(), "CFBACKUP_REPOSITORY") {
		t.Fatalf("no repository: %v", err)
	}
}

// TestCheckEnviron: an unknown CFBACKUP_* variable is refused with the nearest known one; known
// ones, families (replicas, harnesses) and other variables pass.
func TestCheckEnviron(t *testing.T) {
	ok := []string{"CFBACKUP_REPOSITORY=/r", "CFBACKUP_QUIET=1", "CFBACKUP_LOG_FORMAT=json", "CFBACKUP_REPLICA_EU_AWS_ACCESS_KEY_ID=x",
		"CFBACKUP_R2_SECRET_ACCESS_KEY=s", "CFBACKUP_CONFIG=/c", "HOME=/root", "CFBACKUP_ACTOR=me",
		"CFBACKUP_TASK=backup", "CFBACKUP_COMPONENTS=d1", "CFBACKUP_TYPO=", "CFBACKUP_BENCH_ROTATE_MIB=8"}
	if err := config.CheckEnviron(ok); err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string]string{
		"CFBACKUP_REPOSITRY=/r":             "CFBACKUP_REPOSITORY",
		"CFBACKUP_LOG_FORMT=json":           "CFBACKUP_LOG_FORMAT",
		"CFBACKUP_CLOUDFLARE_API_TOKEN=tok": "CLOUDFLARE_API_TOKEN",
	} {
		err := config.CheckEnviron(append(ok, env))
		name, val, _ := strings.Cut(env, "=")
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "did you mean "+want+"?") || strings.Contains(err.Error(), "="+val) {
			t.Errorf("%s: %v", env, err)
		}
	}
}
