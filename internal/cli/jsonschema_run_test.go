package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cli"
)

// TestJSONOutputsMatchSchemas runs real commands against an emulated account and checks that each
// prints one document that validates against its schema in docs/JSON.md (cli.JSONSchemaOf), failing
// runs included.
func TestJSONOutputsMatchSchemas(t *testing.T) {
	h := newHookEnv(t)
	schemas := map[string]map[string]any{}
	for _, m := range cli.JSONMessages() {
		schemas[m.Name] = cli.JSONSchemaOf(m)
	}
	for i := 0; i < 2; i++ {
		if _, errOut, code := h.run(t, "backup", "--label", "n=x"); code != 0 {
			t.Fatalf("backup: %s", errOut)
		}
	}
	replica := filepath.Join(h.dir, "replica")
	steps := []struct {
		schema string
		code   int
		args   []string
	}{
		{"KeyGenerateMessage", 0, []string{"key", "generate", "-o", filepath.Join(h.dir, "k2.txt")}},
		{"ListEntry", 0, []string{"list"}},
		{"VersionMessage", 0, []string{"version"}},
		{"VerifyMessage", 0, []string{"verify"}},
		{"ErrorMessage", 7, []string{"verify", "0123456789abcdef"}},
		{"VerifyAllMessage", 0, []string{"verify", "--all"}},
		{"VerifyAllMessage", 0, []string{"verify", "--all", "--read-data-subset", "next/3", "--identity-file", filepath.Join(h.dir, "key.txt")}},
		{"ErrorMessage", 2, []string{"verify", "--all", "--read-data-subset", "4/3"}},
		{"StatsMessage", 0, []string{"stats"}},
		{"PruneMessage", 0, []string{"prune", "--keep-last", "5", "--dry-run"}},
		{"PruneMessage", 11, []string{"prune", "--keep-last", "1", "--enforce", "--dry-run"}},
		{"ErrorMessage", 2, []string{"prune"}},
		{"ErrorMessage", 8, []string{"prune", "--tier", "STANDARD_IA", "--older-than", "1d"}},
		{"ErrorMessage", 2, []string{"list", "--bogus"}}, // --json after the flag that does not parse
		{"ErrorMessage", 2, []string{"audit", "show"}},   // an unknown subcommand
		{"ErrorMessage", 2, []string{"bakup"}},           // an unknown command
		{"HoldMessage", 0, []string{"hold", "add", "latest", "--reason", "audit", "--case", "C-1", "--until", "90d"}},
		{"Hold", 0, []string{"hold", "list", "--all"}},
		{"HoldMessage", 0, []string{"hold", "release", "latest", "--reason", "done"}},
		{"Hold", 0, []string{"hold", "list", "--all"}},
		{"CopyPlanMessage", 0, []string{"copy", "--to", replica, "--all", "--dry-run"}},
		{"CopySummaryMessage", 0, []string{"copy", "--to", replica, "--all"}},
		{"UnlockMessage", 0, []string{"unlock", "--dry-run"}},
		{"ErrorMessage", 3, []string{"migrate", "--dry-run"}},
		{"AuditVerifyMessage", 0, []string{"audit", "verify"}},
		{"AuditRecord", 0, []string{"audit", "list"}},
		{"Report", 0, []string{"report"}},
		{"BackupPlanMessage", 0, []string{"backup", "--dry-run"}},
		{"RestorePlanMessage", 0, []string{"restore", "latest", "--to-file", filepath.Join(h.dir, "plan.sqlite"), "--dry-run", "--identity-file", filepath.Join(h.dir, "key.txt")}},
		{"d1.FileSummary", 0, []string{"restore", "latest", "--to-file", filepath.Join(h.dir, "restored.sqlite"), "--identity-file", filepath.Join(h.dir, "key.txt")}},
		{"TestRestoreMessage", 0, []string{"test-restore", "latest", "--identity-file", filepath.Join(h.dir, "key.txt")}},
		{"DoctorMessage", 0, []string{"doctor", "--component", "d1,kv", "--identity-file", filepath.Join(h.dir, "key.txt")}},
		{"DoctorMessage", 4, []string{"doctor", "--component", "d1", "--identity-file", filepath.Join(h.dir, "k2.txt")}},
		{"DoctorMessage", 4, []string{"doctor", "--role", "backup-host", "--component", "d1", "--identity-file", filepath.Join(h.dir, "key.txt")}},
		{"DoctorMessage", 4, []string{"doctor", "--role", "auditor"}}, // the harness holds the writer secret and a token: excesses
		{"ErrorMessage", 2, []string{"doctor", "--role", "nosuch"}},
		{"ErrorMessage", 13, []string{"shard", "merge", "--run", "never-ran", "--shards", "2", "--identity-file", filepath.Join(h.dir, "key.txt")}},
		// After a real prune, a restore, a test-restore and a copy: pruned snapshots, activity runs and drills filled in.
		{"PruneMessage", 0, []string{"prune", "--keep-last", "1"}},
		{"Report", 0, []string{"report"}},
	}
	for _, s := range steps {
		out, errOut, code := h.run(t, append(s.args, "--json")...)
		name := strings.Join(s.args, " ")
		if code != s.code {
			t.Errorf("%s: exit %d, want %d\n%s", name, code, s.code, errOut)
			continue
		}
		if probs := cli.ValidateJSON(schemas[s.schema], []byte(out)); len(probs) > 0 {
			t.Errorf("%s: does not match %s:\n  %s\n%s", name, s.schema, strings.Join(probs, "\n  "), out)
		}
	}
	// Key rotation: add a recipient, rewrap, remove it again with --rewrap, rotate the writer secret.
	rc2, _, _ := h.run(t, "key", "generate", "-o", filepath.Join(h.dir, "k5.txt"))
	keyID := filepath.Join(h.dir, "key.txt")
	for _, s := range []struct {
		schema string
		code   int
		args   []string
	}{
		{"KeyListMessage", 0, []string{"key", "list", "--identity-file", keyID}},
		{"KeyRecipientsMessage", 0, []string{"key", "add-recipient", strings.TrimSpace(rc2)}},
		{"KeyRewrapMessage", 0, []string{"key", "rewrap", "--identity-file", keyID}},
		{"ErrorMessage", 7, []string{"key", "remove-recipient", "sha256:0000000000000000"}},
		{"KeyRecipientsMessage", 0, []string{"key", "remove-recipient", strings.TrimSpace(rc2), "--rewrap", "--identity-file", keyID}},
		{"KeyRotateWriterMessage", 0, []string{"key", "rotate-writer"}},
	} {
		out, errOut, code := h.run(t, append(s.args, "--json")...)
		name := strings.Join(s.args, " ")
		if code != s.code {
			t.Errorf("%s: exit %d, want %d\n%s", name, code, s.code, errOut)
			continue
		}
		if probs := cli.ValidateJSON(schemas[s.schema], []byte(out)); len(probs) > 0 {
			t.Errorf("%s: does not match %s:\n  %s\n%s", name, s.schema, strings.Join(probs, "\n  "), out)
		}
	}
	// init last: it needs a location without a repository.
	rcpt, _, _ := h.run(t, "key", "generate", "-o", filepath.Join(h.dir, "k3.txt"))
	out, errOut, code := h.run(t, "init", "--repo", filepath.Join(h.dir, "repo2"), "--recipient", strings.TrimSpace(rcpt),
		"--writer-key-file", filepath.Join(h.dir, "w2.key"), "--json")
	if code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	if probs := cli.ValidateJSON(schemas["InitMessage"], []byte(out)); len(probs) > 0 {
		t.Errorf("init: %v\n%s", probs, out)
	}
}
