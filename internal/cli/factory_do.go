package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// DurableObjects builds the client of the Worker module from CFBACKUP_WORKER_URL (or --worker-url)
// and CFBACKUP_WORKER_SECRET or the file CFBACKUP_WORKER_SECRET_FILE names. The secret is never a flag.
func (f *Factory) DurableObjects() (*durableobject.Client, error) {
	secret := f.cfg.WorkerSecret
	if secret == "" && f.cfg.WorkerSecretFile != "" {
		b, err := os.ReadFile(f.cfg.WorkerSecretFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("worker secret file: %v", err)}
		}
		secret = strings.TrimSpace(string(b))
	}
	c, err := durableobject.NewClient(f.cfg.WorkerURL, secret)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// exitAs keeps an error's message but also makes errors.Is match target (to pick the exit code).
type exitAs struct {
	err    error
	target error
}

func (e exitAs) Error() string   { return e.err.Error() }
func (e exitAs) Unwrap() []error { return []error{e.err, e.target} }

// doErr maps the Durable Object source's errors to documented exit codes.
func doErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, durableobject.ErrAuth), errors.Is(err, durableobject.ErrNotConfigured), errors.Is(err, durableobject.ErrFormat):
		return exitAs{err, cloudflare.ErrAuth} // exit 5: the Worker side
	case errors.Is(err, durableobject.ErrNotFound):
		return exitAs{err, engine.ErrNotFound}
	case errors.Is(err, durableobject.ErrRefused):
		return exitAs{err, engine.ErrRefused}
	case errors.Is(err, durableobject.ErrMismatch):
		return exitAs{err, engine.ErrIntegrity}
	}
	return err
}
