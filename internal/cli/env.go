package cli

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// factoryEnv is the Factory as components see it (source.Env): the Cloudflare client, settings by
// their config-file key, the logger and stderr.
type factoryEnv struct{ f *Factory }

var _ source.Env = factoryEnv{}

// Env is what components may ask of this run.
func (f *Factory) Env() source.Env { return factoryEnv{f} }

func (e factoryEnv) Cloudflare() (*cloudflare.Client, error) { return e.f.Cloudflare() }
func (e factoryEnv) Log() *slog.Logger                       { return e.f.Log() }
func (e factoryEnv) Stderr() io.Writer                       { return e.f.IO.Err }
func (e factoryEnv) Interactive() bool                       { return isTerminal(e.f.IO.In) && isTerminal(e.f.IO.Err) }

// secretSettings are the secrets components may read by name; they come from the environment (or a
// _FILE), never from flags, and are never printed.
var secretSettings = map[string]func(f *Factory) string{
	"r2_access_key_id":     func(f *Factory) string { return f.cfg.R2AccessKeyID },
	"r2_secret_access_key": func(f *Factory) string { return f.cfg.R2SecretAccessKey },
	"worker_secret":        func(f *Factory) string { return f.cfg.WorkerSecret },
	"test_restore_worker_secret": func(f *Factory) string {
		return f.cfg.TestRestoreWorkerSecret
	},
	"cloudflare_api_token": func(f *Factory) string { return f.cfg.CloudflareAPIToken },
}

// Setting is a configuration value by its config-file key, formatted as text ("" when unset or
// unknown).
func (e factoryEnv) Setting(key string) string {
	if e.f.cfg == nil {
		return ""
	}
	if s, ok := secretSettings[key]; ok {
		return s(e.f)
	}
	v := reflect.ValueOf(e.f.cfg).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ","); tag == key {
			fv := v.Field(i)
			if fv.IsZero() {
				return ""
			}
			return fmt.Sprint(fv.Interface())
		}
	}
	return ""
}

// confirmOnTerminal asks for c.Name on a terminal; elsewhere --yes is required.
func confirmOnTerminal(f *Factory) func(c *source.Confirmation) error {
	return func(c *source.Confirmation) error {
		if !isTerminal(f.IO.In) || !isTerminal(f.IO.Err) {
			return fmt.Errorf("%w: this restore replaces %s; add --yes to confirm (try --dry-run first)", engine.ErrRefused, c.Prompt)
		}
		fmt.Fprintf(f.IO.Err, "This replaces %s.\nType %q to continue: ", c.Prompt, c.Name)
		line, _ := bufio.NewReader(f.IO.In).ReadString('\n')
		if strings.TrimSpace(line) != c.Name {
			return fmt.Errorf("%w: confirmation did not match %q; nothing was changed", engine.ErrRefused, c.Name)
		}
		return nil
	}
}
