package main_test

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestKilledBackupInAuditTrail: a backup killed with SIGKILL can't record its end, but the "started"
// record it wrote first shows up as an unfinished run in 'audit verify' and as a failure in the report:
// a crashed cron job is never silent.
func TestKilledBackupInAuditTrail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and seeds a large database")
	}
	em := startEmu(t, 20000)
	e := newEnv(t, em, "CFBACKUP_SEGMENT_SIZE=1048576", "CFBACKUP_ACTOR=nightly-cron")
	e.setup()
	e.must("backup", "--no-progress")
	st, stderr := interruptedBackup(t, e, syscall.SIGKILL)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("process state %v; stderr:\n%s", st, stderr)
	}

	out := e.must("audit", "verify", "--json")
	var v struct {
		Status struct {
			OK         bool `json:"ok"`
			Records    int  `json:"records"`
			Unfinished []struct {
				Command string `json:"command"`
				Actor   string `json:"actor"`
				Result  string `json:"result"`
			} `json:"unfinished"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	// init ok, backup started+ok, killed backup started.
	if !v.Status.OK || v.Status.Records != 4 || len(v.Status.Unfinished) != 1 || v.Status.Unfinished[0].Command != "backup" || v.Status.Unfinished[0].Actor != "nightly-cron" {
		t.Fatalf("audit status %+v", v.Status)
	}

	out = e.must("report", "--json")
	var rep struct {
		Components []struct {
			Component  string `json:"component"`
			Backups    int    `json:"backups"`
			Unfinished int    `json:"unfinished"`
		} `json:"components"`
		Failures []struct {
			Kind string `json:"kind"`
		} `json:"failures"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Components) != 1 || rep.Components[0].Backups != 1 || rep.Components[0].Unfinished != 1 || len(rep.Failures) != 1 || rep.Failures[0].Kind != "unfinished" {
		t.Fatalf("report %s", out)
	}
	if text := e.must("audit", "verify"); !strings.Contains(text, "unfinished: #4") {
		t.Fatalf("audit verify text:\n%s", text)
	}

	// Ctrl-C: the run records its end (exit 130) before it exits.
	st, stderr = interruptedBackup(t, e, os.Interrupt)
	if st.ExitCode() != 130 {
		t.Fatalf("exit %d; stderr:\n%s", st.ExitCode(), stderr)
	}
	out = e.must("audit", "list", "--json")
	var recs []struct {
		Seq      int    `json:"seq"`
		Result   string `json:"result"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatal(err)
	}
	// init, backup started+ok, killed backup started, report (a read: one record), Ctrl-C'd backup
	// started+error.
	if last := recs[len(recs)-1]; len(recs) != 7 || last.Result != "error" || last.ExitCode != 130 {
		t.Fatalf("records after Ctrl-C: %+v", recs)
	}
}
