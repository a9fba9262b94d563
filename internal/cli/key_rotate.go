package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/source/kv"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Key rotation in place (docs/RUNBOOK.md §3, docs/SECURITY.md "Key rotation"): recipients are added
// and removed in config.json, 'rewrap' rewrites every age header so that exactly the current
// recipients can decrypt, and 'rotate-writer' replaces the writer secret. Every command that changes
// the repository takes its exclusive lock and is audited (hooks.go).

// addKeyRotationCommands registers the rotation subcommands under 'key'.
func addKeyRotationCommands(cmd *cobra.Command, f *Factory) {
	cmd.AddCommand(newCmdKeyList(f), newCmdKeyAddRecipient(f), newCmdKeyRemoveRecipient(f), newCmdKeyRewrap(f), newCmdKeyRotateWriter(f))
}

func newCmdKeyList(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the repository's recipients and writer key id",
		Long: `List the recipients (age public keys) new backups are encrypted to, with their fingerprints, and
the writer key id (pin it on hosts with CFBACKUP_REPOSITORY_KEY_ID). With --identity-file, marks the
recipients that identity can decrypt. Names an unfinished rewrap or writer rotation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := f.Repo(ctx)
			if err != nil {
				return err
			}
			ids, err := f.Identities(false)
			if err != nil {
				return err
			}
			msg := &KeyListMessage{MessageType: msgKeyList, Repository: r.Store.Location(), ID: r.Config.ID, IdentityChecked: len(ids) > 0, RotationPending: []string{}}
			match := map[string]bool{}
			for _, fp := range r.MatchingRecipients(ids) {
				match[fp] = true
			}
			for _, x := range r.Config.Recipients {
				msg.Recipients = append(msg.Recipients, KeyListRecipient{Recipient: x.Recipient, Fingerprint: x.Fingerprint, Matches: match[x.Fingerprint]})
			}
			if k := r.Key(); k != nil {
				msg.KeyID = k.ID()
			}
			for _, kind := range []string{"rewrap", "writer"} {
				if _, err := r.Store.Stat(ctx, layout.RotationJournalKey(kind)); err == nil {
					msg.RotationPending = append(msg.RotationPending, layout.RotationJournalKey(kind))
				}
			}
			if f.jsonOut {
				return writeJSON(f.IO.Out, msg)
			}
			for _, x := range msg.Recipients {
				mark := ""
				if x.Matches {
					mark = "  (your identity)"
				}
				fmt.Fprintf(f.IO.Out, "%s  %s%s\n", x.Fingerprint, x.Recipient, mark)
			}
			if msg.KeyID != "" {
				fmt.Fprintf(f.IO.Out, "writer key id: %s\n", msg.KeyID)
			}
			for _, p := range msg.RotationPending {
				fmt.Fprintf(f.IO.Err, "Unfinished rotation: %s (rerun 'cfbackup key rewrap' or 'cfbackup key rotate-writer' to finish it)\n", p)
			}
			return nil
		},
	}
}

// keyRepo takes the repository's exclusive lock and returns the repository, which must be
// authenticated by the writer secret: key changes rewrite config.json.
func keyRepo(cmd *cobra.Command, f *Factory) (*repo.Repo, func(), error) {
	_, r, unlock, err := lockedRepo(cmd, f, engine.LockExclusive, false)
	if err != nil {
		return nil, nil, err
	}
	if r.Key() == nil {
		unlock()
		return nil, nil, r.RequireKey("changing keys")
	}
	return r, unlock, nil
}

func recipientStrings(r *repo.Repo) []string {
	out := make([]string, 0, len(r.Config.Recipients))
	for _, x := range r.Config.Recipients {
		out = append(out, x.Recipient)
	}
	return out
}

func newCmdKeyAddRecipient(f *Factory) *cobra.Command {
	return mutating(&cobra.Command{
		Use:   "add-recipient age1…",
		Short: "Add a recipient: new backups are encrypted to it too",
		Long: `Add an age recipient (public key) to the repository. keys/writer.age is re-encrypted to the new set
and config.json re-signed with the writer secret; every backup from now on is encrypted to it as well.
Existing snapshots stay encrypted to the recipients they were made for: run 'cfbackup key rewrap' to
let the new recipient read them too. Backup hosts that pin recipients (CFBACKUP_RECIPIENTS) must be
given the new list.`,
		Example: `  cfbackup key add-recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc := strings.TrimSpace(args[0])
			if _, err := keys.ParseRecipients([]string{rc}); err != nil {
				return usageError{fmt.Errorf("%w: %v (a recipient is the public key 'age1…' that 'cfbackup key generate' prints)", repo.ErrBadRecipient, err)}
			}
			r, unlock, err := keyRepo(cmd, f)
			if err != nil {
				return err
			}
			defer unlock()
			if i, err := r.FindRecipient(rc); err == nil {
				return usageError{fmt.Errorf("%s (%s) is already a recipient of %s", rc, r.Config.Recipients[i].Fingerprint, r.Store.Location())}
			}
			if err := r.SetRecipients(cmd.Context(), append(recipientStrings(r), rc)); err != nil {
				return err
			}
			changed := repo.Recipient{Recipient: rc, Fingerprint: keys.Fingerprint(rc)}
			return printRecipients(f, "add", changed, r, nil)
		},
	})
}

func printRecipients(f *Factory, action string, changed repo.Recipient, r *repo.Repo, rw *repo.RewrapResult) error {
	if f.jsonOut {
		return writeJSON(f.IO.Out, &KeyRecipientsMessage{MessageType: msgKeyRecipients, Action: action, Changed: changed, Recipients: r.Config.Recipients, Rewrap: rw})
	}
	verb := map[string]string{"add": "Added", "remove": "Removed"}[action]
	fmt.Fprintf(f.IO.Out, "%s recipient %s. New backups are encrypted to %d recipient(s):\n", verb, changed.Fingerprint, len(r.Config.Recipients))
	for _, x := range r.Config.Recipients {
		fmt.Fprintf(f.IO.Out, "  %s  %s\n", x.Fingerprint, x.Recipient)
	}
	if rw != nil {
		printRewrap(f, rw)
	} else if action == "remove" {
		fmt.Fprintln(f.IO.Err, "Existing snapshots can still be decrypted by the removed identity: run 'cfbackup key rewrap' (and 'cfbackup key rotate-writer' if it may have leaked).")
	}
	return nil
}

func printRewrap(f *Factory, rw *repo.RewrapResult) {
	fmt.Fprintf(f.IO.Out, "Rewrapped %d segment(s) (%d resumed), %d snapshot(s); read %d bytes, wrote %d bytes.\n",
		rw.Rewritten, rw.Resumed, rw.Manifests, rw.BytesRead, rw.BytesWritten)
	for _, l := range rw.Locked {
		fmt.Fprintf(f.IO.Err, "  locked, not rewrapped: %s\n", l)
	}
}

func newCmdKeyRemoveRecipient(f *Factory) *cobra.Command {
	var rewrap, force bool
	cmd := mutating(&cobra.Command{
		Use:   "remove-recipient FINGERPRINT|age1… [--rewrap]",
		Short: "Remove a recipient; with --rewrap, make it unable to decrypt anything in the repository",
		Long: `Remove a recipient (by fingerprint "sha256:…" or by its "age1…" key) from the repository: new backups
are no longer encrypted to it. The last recipient is never removed, and a removal that leaves no
recipient your --identity-file can decrypt is refused unless --force.

--rewrap then rewrites the header of every segment, catalogue and keys/writer.age so the removed
identity can decrypt nothing stored in the repository (see 'cfbackup key rewrap'); it needs an
--identity-file that opens every snapshot. If the identity may have leaked, also run
'cfbackup key rotate-writer': its holder could unwrap the writer secret.`,
		Example: `  cfbackup key remove-recipient sha256:cf7e568231315068 --rewrap --identity-file new.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := f.Identities(rewrap)
			if err != nil {
				return err
			}
			r, unlock, err := keyRepo(cmd, f)
			if err != nil {
				return err
			}
			defer unlock()
			i, err := r.FindRecipient(args[0])
			if err != nil {
				return err
			}
			if len(r.Config.Recipients) == 1 {
				return fmt.Errorf("%w: %s is the only recipient of %s: add the new one first ('cfbackup key add-recipient age1…'), then remove this one", repo.ErrLastRecipient, r.Config.Recipients[i].Fingerprint, r.Store.Location())
			}
			changed := r.Config.Recipients[i]
			rest := recipientStrings(r)
			rest = append(rest[:i:i], rest[i+1:]...)
			if !force && !repo.Decrypts(rest, ids) {
				why := "no --identity-file was given to check"
				if len(ids) > 0 {
					why = "the --identity-file given decrypts none of them"
				}
				return fmt.Errorf("%w: after removing %s, %s of the remaining %d recipient(s) (%s); pass the identity of a remaining recipient, or --force if another person holds one",
					repo.ErrLockout, changed.Fingerprint, why, len(rest), strings.Join(rest, ", "))
			}
			if err := r.SetRecipients(cmd.Context(), rest); err != nil {
				return err
			}
			var rw *repo.RewrapResult
			if rewrap {
				rw, err = r.Rewrap(cmd.Context(), repo.RewrapOptions{Identities: ids, OnObject: rewrapProgress(f)})
				if err != nil && rw == nil {
					return err
				}
				if perr := printRecipients(f, "remove", changed, r, rw); perr != nil {
					return perr
				}
				return err
			}
			return printRecipients(f, "remove", changed, r, nil)
		},
	})
	cmd.Flags().BoolVar(&rewrap, "rewrap", false, "also rewrite every age header so the removed identity decrypts nothing (needs --identity-file)")
	cmd.Flags().BoolVar(&force, "force", false, "remove even when --identity-file decrypts none of the remaining recipients")
	return cmd
}

func rewrapProgress(f *Factory) func(string, int, int) {
	return func(key string, done, total int) {
		f.Log().Debug("rewrapped", "object", key, "done", done, "total", total)
	}
}

func newCmdKeyRewrap(f *Factory) *cobra.Command {
	return mutating(&cobra.Command{
		Use:   "rewrap --identity-file FILE",
		Short: "Rewrite every age header so exactly the current recipients can decrypt",
		Long: `Rewrite the header of every segment, catalogue and keys/writer.age so that exactly the recipients in
config.json can decrypt them. Payloads are not re-compressed or re-encrypted: the file key each header
wraps stays, only who it is wrapped to changes (so a removed identity's holder who kept file keys or
copies from before keeps what they took; rewrap protects the bucket from now on). Each segment is
re-uploaded whole (S3 has no partial write) under its own name, at its old size when possible, so
snapshots stay readable throughout; manifests then record the new SHA-256.

Needs the exclusive lock and an identity that opens every snapshot. Interrupted, it resumes where it
stopped when run again (journal under rotation/). Objects under S3 Object Lock cannot be replaced: they
are listed and the command exits 8; their old versions stay readable until retention ends.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := f.Identities(true)
			if err != nil {
				return err
			}
			r, unlock, err := keyRepo(cmd, f)
			if err != nil {
				return err
			}
			defer unlock()
			start := time.Now()
			rw, err := r.Rewrap(cmd.Context(), repo.RewrapOptions{Identities: ids, OnObject: rewrapProgress(f)})
			if rw == nil {
				return err
			}
			if f.jsonOut {
				if werr := writeJSON(f.IO.Out, &KeyRewrapMessage{MessageType: msgKeyRewrap, Recipients: r.Config.Recipients, Result: rw, Seconds: time.Since(start).Seconds()}); werr != nil {
					return werr
				}
				return err
			}
			printRewrap(f, rw)
			return err
		},
	})
}

func newCmdKeyRotateWriter(f *Factory) *cobra.Command {
	var output string
	cmd := mutating(&cobra.Command{
		Use:   "rotate-writer [-o FILE]",
		Short: "Replace the writer secret; prints the new key id to pin",
		Long: `Make a new writer secret and re-authenticate the repository with it: every manifest is re-signed,
R2 incremental indexes re-sealed (KV indexes are re-sealed empty: the next KV backup of each namespace is
a full one), then keys/writer.age and config.json are rewritten — the commit point. The old secret then
authenticates nothing: hosts holding it are refused (exit 6) until given the new file.

The new secret goes to -o FILE (default: the writer key file this host uses, replaced) and is never
printed; until the rotation commits it waits in FILE.new, and a rerun resumes with it. Pin the new key
id printed at the end on every host (CFBACKUP_REPOSITORY_KEY_ID). Interrupted R2 backups cannot resume
across a rotation (they start over).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return rotateWriterRun(cmd, f, output)
		},
	})
	cmd.Flags().StringVarP(&output, "output", "o", "", "where to write the new writer secret (default: the current writer key file)")
	return cmd
}

// writerKeyPath is the file a host's writer secret lives in (writer_key_file, else init's default).
func writerKeyPath(f *Factory, id string) string {
	if p := f.Config().WriterKeyFile; p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "writer-" + id + ".key"
	}
	return filepath.Join(dir, "cfbackup", "writer-"+id+".key")
}

func rotateWriterRun(cmd *cobra.Command, f *Factory, output string) error {
	ctx := cmd.Context()
	st, err := f.Store(ctx)
	if err != nil {
		return err
	}
	plain, err := repo.Open(ctx, st)
	if err != nil {
		return err
	}
	if output == "" {
		output = writerKeyPath(f, plain.Config.ID)
	}
	pending := output + ".new"
	newSecret, err := os.ReadFile(pending)
	switch {
	case err == nil:
		if newSecret, err = repo.DecodeSecret(newSecret); err != nil {
			return fmt.Errorf("%w: %s: %v", engine.ErrKey, pending, err)
		}
		// Past the commit point already? Then only the file swap is left.
		if plain.TryKeys(newSecret) == 0 {
			if err := st.Delete(ctx, layout.RotationJournalKey("writer")); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("remove the finished rotation's journal: %w", err)
			}
			return finishRotateWriter(f, pending, output, &repo.RotateWriterResult{NewKeyID: keyIDOf(newSecret)}, time.Now())
		}
	case errors.Is(err, os.ErrNotExist):
		newSecret = make([]byte, 32)
		if _, err := rand.Read(newSecret); err != nil {
			return err
		}
		if err := writeSecretFile(pending, hex.EncodeToString(newSecret)+"\n"); err != nil {
			return fmt.Errorf("write the new writer secret to %s: %w", pending, err)
		}
	default:
		return fmt.Errorf("%w: %s: %v", engine.ErrKey, pending, err)
	}
	r, unlock, err := keyRepo(cmd, f)
	if err != nil {
		return err
	}
	defer unlock()
	start := time.Now()
	res, err := r.RotateWriter(ctx, newSecret, repo.RotateWriterOptions{Rekey: rekeyIndex, OnObject: rewrapProgress(f)})
	if err != nil {
		return fmt.Errorf("%w (the new secret waits in %s: rerun 'cfbackup key rotate-writer%s' to resume)", err, pending, outputFlag(output, f, r.Config.ID))
	}
	return finishRotateWriter(f, pending, output, res, start)
}

func outputFlag(output string, f *Factory, id string) string {
	if output == writerKeyPath(f, id) {
		return ""
	}
	return " -o " + output
}

func keyIDOf(secret []byte) string { return seal.NewKey(secret).ID() }

// finishRotateWriter moves the committed secret into place and reports the key id to pin.
func finishRotateWriter(f *Factory, pending, output string, res *repo.RotateWriterResult, start time.Time) error {
	if err := os.Rename(pending, output); err != nil {
		return fmt.Errorf("the repository now authenticates with the secret in %s, but moving it to %s failed: %w; move it by hand", pending, output, err)
	}
	if f.jsonOut {
		return writeJSON(f.IO.Out, &KeyRotateWriterMessage{MessageType: msgKeyRotateWriter, WriterKeyFile: output, Result: res, Seconds: time.Since(start).Seconds()})
	}
	fmt.Fprintf(f.IO.Out, "Writer secret rotated: %d snapshot(s) re-signed, %d index(es) re-sealed. New secret in %s (mode 0600).\n", res.Manifests+res.Resumed, res.Objects, output)
	fmt.Fprintf(f.IO.Out, "New key id: %s\n", res.NewKeyID)
	fmt.Fprintln(f.IO.Err, "Give every backup host the new writer key file and pin the new key id (CFBACKUP_REPOSITORY_KEY_ID); the old secret is refused from now on.")
	return nil
}

// rekeyIndex re-seals a manifest's side object by its kind (R2 or KV incremental index, D1 chunk index).
func rekeyIndex(key string, b, oldSecret, newSecret []byte) ([]byte, error) {
	switch {
	case strings.Contains(key, ".r2."):
		return r2.RekeyIndex(oldSecret, newSecret, b)
	case strings.Contains(key, ".kv."):
		return kv.RekeyIndex(oldSecret, newSecret, b)
	case strings.Contains(key, ".d1."):
		return d1.RekeyChunkIndex(oldSecret, newSecret, b)
	}
	return nil, fmt.Errorf("%s: not an index this cfbackup can re-seal", key)
}
