package cli

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/repo"
)

// InitOptions are the flags of 'init'.
type InitOptions struct {
	f              *Factory
	Recipients     []string
	RecipientsFile string
	WriterKeyFile  string
	// Object Lock retention (init_objectlock.go).
	lock objectLockFlags
}

// NewCmdInit creates a repository.
func NewCmdInit(f *Factory, runF func(*InitOptions) error) *cobra.Command {
	o := &InitOptions{f: f}
	cmd := mutating(&cobra.Command{
		Use:   "init",
		Short: "Create a new, empty repository",
		Long: `Create a repository at --repo (a local path, file://PATH, or s3://BUCKET/PREFIX with
CFBACKUP_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) for one or more age
recipients. Everything written later is encrypted to all of them. It refuses to touch a location that
already holds a repository.

init also creates the writer secret (used for keyed hashes of item names, so incremental backups can
be decided without any decryption key). It is stored in the repository encrypted to the recipients, and
a copy is written to --writer-key-file (default ~/.config/cfbackup/writer-<repo id>.key) for backup hosts.`,
		Example: `  cfbackup init --repo ./cfbackup-repo --recipient "$(cfbackup key generate -o key.txt)"
  CFBACKUP_S3_ENDPOINT=https://ACCOUNT.r2.cloudflarestorage.com cfbackup init --repo s3://backups/prod --recipients-file recipients.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return initRun(cmd, o)
		},
	})
	cmd.Flags().StringSliceVar(&o.Recipients, "recipient", nil, "age recipient (public key); repeat or comma-separate (env CFBACKUP_RECIPIENTS)")
	cmd.Flags().StringVar(&o.RecipientsFile, "recipients-file", "", "file with one recipient per line (env CFBACKUP_RECIPIENTS_FILE)")
	cmd.Flags().StringVar(&o.WriterKeyFile, "writer-key-file", "", "where to write the local copy of the writer secret (env CFBACKUP_WRITER_KEY_FILE)")
	o.lock.addFlags(cmd)
	return cmd
}

func initRun(cmd *cobra.Command, o *InitOptions) error {
	ctx := cmd.Context()
	cfg := o.f.Config()
	rcps := cfg.Recipients
	file := cfg.RecipientsFile
	if file != "" {
		fromFile, err := readRecipientLines(file)
		if err != nil {
			return err
		}
		rcps = append(rcps, fromFile...)
	}
	ol, err := o.lock.parse()
	if err != nil {
		return err
	}
	st, err := o.f.Store(ctx)
	if err != nil {
		return err
	}
	r, secret, err := repo.Init(ctx, st, repo.InitOptions{Recipients: rcps, SegmentSize: cfg.SegmentSize, ChunkSize: cfg.ChunkSize, ObjectLock: ol})
	if err != nil {
		return err
	}
	wk := cfg.WriterKeyFile
	if wk == "" {
		dir, derr := os.UserConfigDir()
		if derr != nil {
			dir = "."
		} else {
			dir = filepath.Join(dir, "cfbackup")
		}
		wk = filepath.Join(dir, "writer-"+r.Config.ID+".key")
	}
	if err := writeSecretFile(wk, hex.EncodeToString(secret)+"\n"); err != nil {
		return fmt.Errorf("repository created, but writing the writer secret copy failed: %w (it is also stored encrypted in the repository at %s)", err, repo.WriterKeyKey)
	}
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &InitMessage{Repository: st.Location(), ID: r.Config.ID, Recipients: r.Config.Recipients, WriterKeyFile: wk, Format: r.Config.Format, ObjectLock: r.Config.ObjectLock})
	}
	fmt.Fprintf(o.f.IO.Out, "Created repository %s at %s for %d recipient(s).\n", r.Config.ID, st.Location(), len(r.Config.Recipients))
	for _, x := range r.Config.Recipients {
		fmt.Fprintf(o.f.IO.Out, "  %s  %s\n", x.Fingerprint, x.Recipient)
	}
	fmt.Fprintf(o.f.IO.Out, "Writer secret: %s (mode 0600; also in the repository at %s, encrypted to the recipients).\n", wk, repo.WriterKeyKey)
	if ol != nil {
		fmt.Fprintf(o.f.IO.Out, "Object Lock: everything written gets %s retention for %d day(s); prune extends it for what it keeps.\n", ol.Mode, ol.Days)
	}
	return nil
}

func readRecipientLines(path string) ([]string, error) {
	return readListFile(path, "recipients file")
}

// readListFile reads one entry per line, trimmed, skipping blank lines and # comments (recipients,
// object IDs); what names the flag in errors.
func readListFile(path, what string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", what, err)}
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

func writeSecretFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(content); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
