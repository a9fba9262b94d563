package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// VerifyOptions are the flags of 'verify'.
type VerifyOptions struct {
	f        *Factory
	Snapshot string
	ReadData bool
	Subset   string
	NoRecord bool
	All      bool
}

// NewCmdVerify checks a snapshot.
func NewCmdVerify(f *Factory, runF func(*VerifyOptions) error) *cobra.Command {
	o := &VerifyOptions{f: f}
	cmd := &cobra.Command{
		Use:   "verify [SNAPSHOT|latest]",
		Short: "Check that a snapshot is complete and intact",
		Long: `Check a snapshot (default: latest).

Quick mode (no identity needed): every segment the snapshot references exists with its recorded size
and ciphertext SHA-256 (each segment is read once).
--read-data also decrypts and decompresses every item and checks its SHA-256 (needs an identity).
--read-data-subset n/t checks the n-th of t groups of segments (run 1/7 … 7/7 on successive days),
or x% a random x percent of segments.
--all checks every snapshot, each distinct segment once (by the oldest snapshot that holds it);
with --read-data-subset k/t it reads only the k-th of t fixed slices of the repository's segments
(chosen by segment id), and next/t picks the slice after the last one recorded under verify/, so t
scheduled runs (say next/7, weekly) read every segment exactly once (docs/STATS.md).
A mismatch names the object and the item and exits 6. The result is recorded in the repository
under verify/ (plaintext: time, snapshot, mode, counts, problems) unless --no-record.`,
		Example: `  cfbackup verify
  cfbackup verify latest --read-data --identity-file key.txt
  cfbackup verify 3f2a --read-data-subset 10% --identity-file key.txt --json
  cfbackup verify --all --read-data-subset next/7 --identity-file key.txt`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Snapshot = args[0]
			}
			if o.Subset != "" {
				o.ReadData = true
			}
			if runF != nil {
				return runF(o)
			}
			return verifyRun(cmd, o)
		},
	}
	cmd.Flags().BoolVar(&o.ReadData, "read-data", false, "decrypt and check every item (needs an identity)")
	cmd.Flags().StringVar(&o.Subset, "read-data-subset", "", "read only some segments: n/t or x%")
	cmd.Flags().BoolVar(&o.NoRecord, "no-record", false, "do not record the result under verify/ in the repository")
	cmd.Flags().BoolVar(&o.All, "all", false, "check every snapshot, each segment once; with --read-data-subset k/t or next/t one slice of the repository")
	reads(cmd, audit.ReadsData+":read-data,read-data-subset")
	return cmd
}

func verifyRun(cmd *cobra.Command, o *VerifyOptions) error {
	if o.All {
		return verifyAllRun(cmd, o)
	}
	if strings.HasPrefix(o.Subset, engine.SliceNext+"/") {
		return usageError{fmt.Errorf("--read-data-subset %s rotates over the whole repository: add --all", o.Subset)}
	}
	if err := engine.ValidateSubset(o.Subset); err != nil {
		return err
	}
	ctx, r, unlock, err := lockedRepo(cmd, o.f, engine.LockShared, false)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := r.FindSnapshot(ctx, o.Snapshot, "")
	if err != nil {
		return err
	}
	ids, err := o.f.Identities(o.ReadData)
	if err != nil {
		return err
	}
	res, verr := o.f.Engine(r).Verify(ctx, m, engine.VerifyOptions{ReadData: o.ReadData, Subset: o.Subset, Identities: ids, Record: !o.NoRecord})
	if res == nil {
		return verr
	}
	vr := resultFromManifest(m)
	vr.Bytes, vr.Items, vr.PerComponent = res.BytesRead, int64(res.Items), nil
	o.f.SetResult(vr)
	if o.f.jsonOut {
		if err := writeJSON(o.f.IO.Out, &VerifyMessage{MessageType: msgVerify, OK: verr == nil, Result: res}); err != nil {
			return err
		}
		return verr
	}
	if verr != nil {
		kind := ""
		if res.FailureKind != "" {
			kind = "; failure kind: " + res.FailureKind
		}
		fmt.Fprintf(o.f.IO.Out, "Snapshot %s FAILED verification (%s%s):\n", m.ID, res.Mode, kind)
		for _, p := range res.Problems {
			fmt.Fprintf(o.f.IO.Out, "  %s\n", p)
		}
		return verr
	}
	fmt.Fprintf(o.f.IO.Out, "Snapshot %s OK (%s): %d/%d segment(s), %d item(s) checked, %s read in %s.\n",
		m.ID, res.Mode, res.Segments, res.SegmentsTotal, res.Items, humanBytes(res.BytesRead), (time.Duration(res.DurationMillis) * time.Millisecond).String())
	return nil
}
