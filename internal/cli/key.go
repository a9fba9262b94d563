package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/keys"
)

// NewCmdKey groups key management.
func NewCmdKey(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage age keys (identities and recipients)",
		Long: `Backups are encrypted to one or more age recipients (public keys). Only a holder of a matching
identity (private key) can restore or deeply verify them; a backup host needs no identity at all.
Keep identities offline or in a secrets manager; give backup hosts only the repository.

Keys rotate in place: add-recipient and remove-recipient change who new backups are encrypted to,
rewrap rewrites every stored header for the current recipients, rotate-writer replaces the writer
secret (docs/RUNBOOK.md §3).`,
	}
	cmd.AddCommand(NewCmdKeyGenerate(f, nil))
	addKeyRotationCommands(cmd, f)
	return cmd
}

// KeyGenerateOptions are the flags of 'key generate'.
type KeyGenerateOptions struct {
	f      *Factory
	PQ     bool
	Output string
}

// NewCmdKeyGenerate writes a new identity file.
func NewCmdKeyGenerate(f *Factory, runF func(*KeyGenerateOptions) error) *cobra.Command {
	o := &KeyGenerateOptions{f: f}
	cmd := mutating(&cobra.Command{
		Use:   "generate -o FILE",
		Short: "Create an age identity file and print its recipient",
		Long: `Create a new age identity (private key) in FILE with mode 0600 and print its recipient (public key),
which you pass to 'cfbackup init --recipient'. It never overwrites an existing file.

--pq makes a post-quantum hybrid identity (ML-KEM-768 + X25519). Such recipients can't be mixed with
classic X25519 recipients in one repository, and need age 1.3 or newer to decrypt by hand.`,
		Example: `  cfbackup key generate -o ~/.config/cfbackup/key.txt
  cfbackup key generate --pq -o breakglass.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return keyGenerateRun(o)
		},
	})
	cmd.Flags().BoolVar(&o.PQ, "pq", false, "post-quantum hybrid identity (ML-KEM-768 + X25519)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "identity file to create (required; never overwritten)")
	return cmd
}

func keyGenerateRun(o *KeyGenerateOptions) error {
	if o.Output == "" {
		return usageError{fmt.Errorf("--output FILE is required: the identity is a secret and is never printed")}
	}
	if dir := filepath.Dir(o.Output); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create the directory for %s: %w", o.Output, err)
		}
	}
	id, rcp, err := keys.Generate(o.PQ)
	if err != nil {
		return err
	}
	if err := keys.WriteIdentityFile(o.Output, id, rcp); err != nil {
		return err
	}
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &KeyGenerateMessage{IdentityFile: o.Output, Recipient: rcp, Fingerprint: keys.Fingerprint(rcp), PostQuantum: o.PQ})
	}
	fmt.Fprintf(o.f.IO.Err, "Wrote identity to %s (mode 0600). Keep it safe: without it, backups can't be restored.\n", o.Output)
	fmt.Fprintln(o.f.IO.Out, rcp)
	return nil
}
