package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/repo"
)

// writerSecret finds the repository's writer secret: the file at writer_key_file
// (CFBACKUP_WRITER_KEY_FILE; must be readable when set), else the default path 'init' wrote for this
// repository, else keys/writer.age opened with the identity when one is configured. nil, nil: this
// host holds no key. A backup host normally has only the file.
func writerSecret(ctx context.Context, f *Factory, r *repo.Repo, replica bool) ([]byte, error) {
	path := f.Config().WriterKeyFile
	if path != "" && !replica {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			return decodeSecret(b)
		case errors.Is(err, fs.ErrNotExist) && f.Config().IdentityFile != "":
			// A restore host in a disaster may have lost the file; its identity unwraps the secret.
			f.Log().Warn("writer key file missing; unwrapping the writer secret with the identity instead", "path", path)
		default:
			return nil, fmt.Errorf("%w: writer key file (CFBACKUP_WRITER_KEY_FILE): %v", engine.ErrKey, err)
		}
	}
	if dir, err := os.UserConfigDir(); err == nil {
		if b, err := os.ReadFile(filepath.Join(dir, "cfbackup", "writer-"+r.Config.ID+".key")); err == nil {
			return decodeSecret(b)
		}
	}
	if f.Config().IdentityFile == "" {
		return nil, nil
	}
	ids, err := f.Identities(false)
	if err != nil {
		return nil, err
	}
	secret, err := r.WriterSecret(ctx, ids)
	if errors.Is(err, repo.ErrWriterKey) {
		return nil, fmt.Errorf("%w: %v", engine.ErrKey, err)
	}
	return secret, err
}

func decodeSecret(b []byte) ([]byte, error) {
	s, err := repo.DecodeSecret(b)
	if err != nil {
		return nil, fmt.Errorf("%w: writer key file: %v", engine.ErrKey, err)
	}
	return s, nil
}

// repoSecret is the writer secret the repository was authenticated with (Factory.OpenRepo read it
// once); an error when this host holds none.
func repoSecret(r *repo.Repo) ([]byte, error) {
	if k := r.Key(); k != nil {
		return k.Secret(), nil
	}
	return nil, r.RequireKey("the R2 incremental index")
}
