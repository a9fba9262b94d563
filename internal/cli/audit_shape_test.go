package cli_test

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// auditRecords lists the trail as JSON objects.
func (h *hookEnv) auditRecords(t *testing.T) (string, []map[string]any) {
	t.Helper()
	out, errOut, code := h.run(t, "audit", "list", "--json")
	if code != 0 {
		t.Fatalf("audit list: %s", errOut)
	}
	var recs []map[string]any
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("audit list --json: %v\n%s", err, out)
	}
	return out, recs
}

// TestAuditRecordsShapesNotNames: the audit trail is plaintext, so it records a command line's shape
// (flag names; values only of flags known to be harmless) and an error's class, never the table,
// database, object or file names a restore was given or an error text quoted.
func TestAuditRecordsShapesNotNames(t *testing.T) {
	h := newHookEnv(t)
	h.env["CFBACKUP_IDENTITY_FILE"] = filepath.Join(h.dir, "key.txt")
	key := "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS8L2JF4"
	if _, errOut, code := h.run(t, "backup", "--label", "ticket=OPS-7", "--label", "note="+key, "--json"); code != 0 {
		t.Fatalf("backup: %s", errOut)
	}
	// A restore naming a table that is not in the snapshot: the error text quotes it.
	_, errOut, code := h.run(t, "restore", "latest", "--d1-database", "app", "--table", "payroll_secrets", "--to-file", filepath.Join(h.dir, "hr-export.sqlite"))
	if code != 7 || !strings.Contains(errOut, "payroll_secrets") {
		t.Fatalf("restore: exit %d, %s", code, errOut)
	}
	raw, recs := h.auditRecords(t)
	for _, leak := range []string{"payroll_secrets", "hr-export", "AGE-SECRET-KEY", "QYQSZQGP"} {
		if strings.Contains(raw, leak) {
			t.Errorf("the audit trail holds %q:\n%s", leak, raw)
		}
	}
	last := recs[len(recs)-1]
	args, _ := json.Marshal(last["args"])
	for _, want := range []string{`"latest"`, `"--table=[1 value]"`, `"--to-file=[value]"`, `"--d1-database=[value]"`} {
		if !strings.Contains(string(args), want) {
			t.Errorf("restore args %s lack %s", args, want)
		}
	}
	if last["result"] != "error" || last["exit_code"].(float64) != 7 || !strings.HasPrefix(last["error"].(string), "not found: ") {
		t.Errorf("restore record: %v", last)
	}
	if !strings.Contains(raw, `"--label=ticket=OPS-7"`) || !strings.Contains(raw, `"--label=note=[REDACTED]"`) || !strings.Contains(raw, `"--json"`) {
		t.Errorf("backup args not recorded as expected:\n%s", raw)
	}
}

// TestHookWarningsHideURLSecrets: a Pushgateway URL with credentials or a token in its query that
// cannot be reached is reported on stderr without them (a guard: hook warnings pass through
// audit.RedactText whatever the package that failed).
func TestHookWarningsHideURLSecrets(t *testing.T) {
	h := newHookEnv(t)
	if _, errOut, code := h.run(t, "backup"); code != 0 {
		t.Fatalf("backup: %s", errOut)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, errOut, code := h.run(t, "verify", "--metrics-push", "http://ops:pw-secret-1@"+addr+"/gw?token=qs-secret-2")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, errOut)
	}
	if !strings.Contains(errOut, "could not push metrics") {
		t.Fatalf("stderr: %s", errOut)
	}
	for _, leak := range []string{"pw-secret-1", "qs-secret-2"} {
		if strings.Contains(errOut, leak) {
			t.Errorf("stderr holds %q: %s", leak, errOut)
		}
	}
}

// TestAuditBackupRecordCounts: a backup's end record says what the snapshot holds — its items in
// all and per component, its bytes before compression and the bytes the run stored — as list shows
// them; its started record carries none of it.
func TestAuditBackupRecordCounts(t *testing.T) {
	h := newHookEnv(t)
	for i := range 2 {
		if _, errOut, code := h.run(t, "backup", "--component", "d1"); code != 0 {
			t.Fatalf("backup %d: %s", i, errOut)
		}
	}
	out, errOut, code := h.run(t, "list", "--json")
	if code != 0 {
		t.Fatalf("list: %s", errOut)
	}
	var snaps []struct {
		ID         string `json:"id"`
		Items      int64  `json:"items"`
		Size       int64  `json:"size"`
		StoredSize int64  `json:"stored_size"`
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("list --json: %v %s", err, out)
	}
	byID := map[string]int{snaps[0].ID: 0, snaps[1].ID: 1}
	_, recs := h.auditRecords(t)
	seen := 0
	for _, r := range recs {
		if r["command"] != "backup" {
			continue
		}
		if r["result"] == "started" {
			if _, ok := r["items"]; ok {
				t.Errorf("a started record carries items: %v", r)
			}
			continue
		}
		ids, _ := r["snapshots"].([]any)
		if len(ids) != 1 {
			t.Fatalf("backup record snapshots %v", r["snapshots"])
		}
		s := snaps[byID[ids[0].(string)]]
		per, _ := r["per_component"].(map[string]any)
		d1, _ := per["d1"].(map[string]any)
		if s.Items == 0 || r["items"] != float64(s.Items) || r["bytes"] != float64(s.Size) || d1["items"] != float64(s.Items) || d1["bytes"] != float64(s.Size) || len(per) != 1 {
			t.Errorf("backup record %v; snapshot %+v", r, s)
		}
		if got, _ := r["stored_bytes"].(float64); int64(got) != s.StoredSize {
			t.Errorf("backup record stored_bytes %v; snapshot stored %d", r["stored_bytes"], s.StoredSize)
		}
		seen++
	}
	if seen != 2 {
		t.Fatalf("%d backup end records, want 2", seen)
	}
}
