package cli

import (
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/repo"
)

// MigrateOptions are the flags of 'migrate'.
type MigrateOptions struct {
	f      *Factory
	DryRun bool
}

// NewCmdMigrate upgrades a repository to the current format in place.
func NewCmdMigrate(f *Factory, runF func(*MigrateOptions) error) *cobra.Command {
	o := &MigrateOptions{f: f}
	cmd := &cobra.Command{
		Use:   "migrate [--dry-run]",
		Short: "Upgrade a format 1 repository to format 2 (authenticated configuration and snapshots)",
		Long: `Format 2 authenticates config.json and every snapshot manifest with the writer secret, so someone
holding only the bucket's credentials can no longer change the recipients backups encrypt to, add or
relabel snapshots, or steer retention (docs/SECURITY.md). This build reads format 1 repositories but
does not write into them: run migrate once.

migrate rewrites config.json only: it adds its MAC and the SHA-256 of every existing manifest, which
then authenticate without being rewritten (they may be under Object Lock). The old config.json is kept
as config.v1.json. Whoever runs migrate vouches for the snapshots it lists: look at 'cfbackup list'
first, and remove any you did not make. Needs the writer secret (CFBACKUP_WRITER_KEY_FILE, or the file
init wrote) or an identity (--identity-file). Older cfbackup versions refuse format 2 repositories.`,
		Example: `  cfbackup list
  cfbackup migrate --dry-run
  cfbackup migrate --identity-file ~/.config/cfbackup/key.txt`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationMutating: "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return migrateRun(cmd, o)
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "list the snapshots that would be vouched for, change nothing")
	return cmd
}

func migrateRun(cmd *cobra.Command, o *MigrateOptions) error {
	ctx := cmd.Context()
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	res, err := r.Migrate(ctx, time.Now(), o.DryRun)
	if err != nil {
		return err
	}
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &MigrateMessage{MessageType: msgSummary, DryRun: o.DryRun, Repository: r.Store.Location(), KeyID: keyID(r), Result: res})
	}
	out := o.f.IO.Out
	verb := "Upgraded"
	if o.DryRun {
		verb = "Would upgrade"
	}
	fmt.Fprintf(out, "%s repository %s from format %d to %d; %d snapshot(s) vouched for:\n", verb, r.Config.ID, res.From, res.To, len(res.Vouched))
	for _, v := range res.Vouched {
		fmt.Fprintf(out, "  %s\n", v.Key)
	}
	keys := make([]string, 0, len(res.Unreadable))
	for k := range res.Unreadable {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "  NOT vouched for (unreadable): %s: %s\n", k, res.Unreadable[k])
	}
	if !o.DryRun {
		fmt.Fprintf(out, "The format 1 configuration is kept as %s. Repository key id: %s (pin it on restore hosts: CFBACKUP_REPOSITORY_KEY_ID).\n", repo.ConfigV1Backup, keyID(r))
	}
	return nil
}

// keyID is the repository key id ("wk:…") when the repository is authenticated, else "".
func keyID(r *repo.Repo) string {
	if k := r.Key(); k != nil {
		return k.ID()
	}
	return ""
}
