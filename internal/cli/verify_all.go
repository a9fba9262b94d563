package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// verifyAllRun is verify --all: every snapshot, each segment once, optionally one slice of them.
func verifyAllRun(cmd *cobra.Command, o *VerifyOptions) error {
	if o.Snapshot != "" {
		return usageError{fmt.Errorf("verify --all checks every snapshot: drop %q, or drop --all to check one", o.Snapshot)}
	}
	if _, _, err := engine.ParseSlice(o.Subset); err != nil {
		return err
	}
	ctx, r, unlock, err := lockedRepo(cmd, o.f, engine.LockShared, false)
	if err != nil {
		return err
	}
	defer unlock()
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	if len(snaps) == 0 {
		return fmt.Errorf("%w: no snapshots in %s to verify", engine.ErrNotFound, r.Store.Location())
	}
	ids, err := o.f.Identities(o.ReadData)
	if err != nil {
		return err
	}
	res, verr := o.f.Engine(r).VerifyAll(ctx, snaps, engine.VerifyAllOptions{VerifyOptions: engine.VerifyOptions{
		ReadData: o.ReadData, Subset: o.Subset, Identities: ids, Record: !o.NoRecord}})
	if res == nil {
		return verr
	}
	if verr == nil && len(bad) > 0 {
		verr = fmt.Errorf("%w: %d manifest(s) could not be read or authenticated (first: %s)", engine.ErrIntegrity, len(bad), firstKey(bad))
	}
	msg := &VerifyAllMessage{MessageType: msgVerifyAll, OK: verr == nil, Mode: "quick", Slice: res.Slice, Snapshots: len(res.Results), Failed: []string{},
		SegmentsTotal: res.SegmentsTotal, SegmentsChecked: res.SegmentsRead, ItemsChecked: res.Items, BytesRead: res.BytesRead, Results: res.Results}
	switch {
	case o.ReadData && res.Slice != "":
		msg.Mode = "read-data-subset " + res.Slice
	case o.ReadData:
		msg.Mode = "read-data"
	}
	rr := RunResult{Bytes: res.BytesRead, Items: int64(res.Items)}
	for _, v := range res.Results {
		rr.Snapshots = append(rr.Snapshots, v.Snapshot)
		if !v.OK {
			msg.Failed = append(msg.Failed, v.Snapshot)
		}
	}
	for _, m := range snaps {
		for _, c := range m.Components {
			if !containsStr(rr.Components, c) {
				rr.Components = append(rr.Components, c)
			}
		}
	}
	o.f.SetResult(rr)
	if o.f.jsonOut {
		if err := writeJSON(o.f.IO.Out, msg); err != nil {
			return err
		}
		return verr
	}
	for _, v := range res.Results {
		if !v.OK {
			fmt.Fprintf(o.f.IO.Out, "Snapshot %s FAILED verification (%s):\n", v.Snapshot, v.Mode)
			for _, p := range v.Problems {
				fmt.Fprintf(o.f.IO.Out, "  %s\n", p)
			}
		}
	}
	for k, e := range bad {
		fmt.Fprintf(o.f.IO.Out, "Manifest %s FAILED: %v\n", k, e)
	}
	verdict := "OK"
	if verr != nil {
		verdict = "FAILED"
	}
	slice := "every segment"
	if res.Slice != "" {
		slice = "slice " + res.Slice
	}
	fmt.Fprintf(o.f.IO.Out, "Repository %s %s (%s, %s): %d snapshot(s), %d of %d segment(s), %d item(s) checked, %s read in %s.\n",
		r.Store.Location(), verdict, msg.Mode, slice, len(res.Results), res.SegmentsRead, res.SegmentsTotal, res.Items, humanBytes(res.BytesRead),
		time.Since(startOf(o.f)).Round(time.Millisecond))
	return verr
}

func firstKey(m map[string]error) string {
	first := ""
	for k := range m {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

func startOf(f *Factory) time.Time {
	if f.run.start.IsZero() {
		return time.Now()
	}
	return f.run.start
}
