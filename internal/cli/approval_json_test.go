package cli_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cli"
)

// TestApprovalJSONOutputsMatchSchemas runs the approval commands for real (emulated account, local
// repository) and checks each --json document against its schema in docs/JSON.md, the exit-12 plan
// and refusals included.
func TestApprovalJSONOutputsMatchSchemas(t *testing.T) {
	h := newHookEnv(t)
	schemas := map[string]map[string]any{}
	for _, m := range cli.JSONMessages() {
		schemas[m.Name] = cli.JSONSchemaOf(m)
	}
	if _, errOut, code := h.run(t, "backup"); code != 0 {
		t.Fatalf("backup: %s", errOut)
	}
	step := func(schema string, wantCode int, args ...string) string {
		t.Helper()
		if schemas[schema] == nil {
			t.Fatalf("no schema %s in JSONMessages", schema)
		}
		out, errOut, code := h.run(t, append(args, "--json")...)
		if code != wantCode {
			t.Fatalf("%s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, errOut)
		}
		if probs := cli.ValidateJSON(schemas[schema], []byte(out)); len(probs) > 0 {
			t.Errorf("%s: does not match %s:\n  %s\n%s", strings.Join(args, " "), schema, strings.Join(probs, "\n  "), out)
		}
		return out
	}
	keys := map[string]string{}
	for _, n := range []string{"admin", "bob"} {
		out := step("SigningKeyMessage", 0, "approvers", "keygen", "-o", filepath.Join(h.dir, n+".key"))
		keys[n] = regexp.MustCompile(`"public_key": "([^"]+)"`).FindStringSubmatch(out)[1]
		if err := os.WriteFile(filepath.Join(h.dir, n+".pub"), []byte(keys[n]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(h.dir, "cfbackup.yaml")
	if err := os.WriteFile(cfg, []byte("approval:\n  protected:\n    d1: [app]\n  trusted_keys: [\""+keys["admin"]+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.env["CFBACKUP_CONFIG"] = cfg
	h.env["CFBACKUP_IDENTITY_FILE"] = filepath.Join(h.dir, "key.txt")
	h.env["CFBACKUP_SIGNING_KEY_FILE"] = filepath.Join(h.dir, "admin.key")
	step("ApproverAddedMessage", 0, "approvers", "add", "bob", "--public-key", filepath.Join(h.dir, "bob.pub"))
	step("ApproverAddedMessage", 0, "approvers", "add", "ops", "--public-key", filepath.Join(h.dir, "admin.pub"))
	step("ApproversMessage", 0, "approvers", "list")
	out := step("PlanWrittenMessage", 12, "restore", "latest", "--d1-database", "app", "--in-place", "--yes")
	id := regexp.MustCompile(`"plan": "([0-9a-f]{20})"`).FindStringSubmatch(out)[1]
	step("PlansMessage", 0, "plans", "list")
	step("ErrorMessage", 12, "restore", "latest", "--d1-database", "app", "--in-place", "--yes", "--plan", id)
	h.env["CFBACKUP_SIGNING_KEY_FILE"] = filepath.Join(h.dir, "bob.key")
	h.env["CFBACKUP_ACTOR"] = "bob"
	step("ApprovalMessage", 0, "approve", id)
	step("PlanShowMessage", 0, "plans", "show", id)
	h.env["CFBACKUP_ACTOR"] = "cron"
	h.env["CFBACKUP_SIGNING_KEY_FILE"] = filepath.Join(h.dir, "admin.key")
	step("d1.DatabaseSummary", 0, "restore", "latest", "--d1-database", "app", "--in-place", "--yes", "--plan", id)
}
