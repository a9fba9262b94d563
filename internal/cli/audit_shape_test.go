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
