package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// TestCheckRoleSecrets walks the secrets matrix for every role: a forbidden secret held is a
// failure naming what to drop, a required one missing a failure naming what is missing, anything
// else ok; a role without a token fails when one is set.
func TestCheckRoleSecrets(t *testing.T) {
	held := []Held{{Source: "SOME_SETTING", Fix: "drop SOME_SETTING"}}
	for _, r := range Roles {
		for _, hold := range []bool{false, true} {
			h := RoleHost{}
			if hold {
				h = RoleHost{Identity: held, WriterSecret: held, WorkerSecret: held, R2Keys: held}
			}
			got := map[string]source.Finding{}
			for _, f := range CheckRole(context.Background(), r, h) {
				got[f.Check] = f
			}
			for check, need := range map[string]Need{"role.identity": r.Identity, "role.writer_secret": r.WriterSecret,
				"role.worker_secret": r.WorkerSecret, "role.r2_keys": r.R2Keys} {
				f, ok := got[check]
				if !ok {
					t.Fatalf("%s: no %s finding", r.Name, check)
				}
				wantFail := hold && need == Forbidden || !hold && need == Required
				if (f.Status == source.StatusFail) != wantFail {
					t.Errorf("%s %s (held %v, %s): status %s: %s", r.Name, check, hold, need, f.Status, f.Detail)
				}
				if wantFail && hold && (f.Fix != "drop SOME_SETTING" || !strings.Contains(f.Detail, "SOME_SETTING")) {
					t.Errorf("%s %s: the finding must name what to drop: %+v", r.Name, check, f)
				}
				if wantFail && f.Class == nil {
					t.Errorf("%s %s: a failure without a class", r.Name, check)
				}
			}
			tok := got["role.cloudflare_token"]
			if wantFail := r.Token == Required; (tok.Status == source.StatusFail) != wantFail {
				t.Errorf("%s: no token, role %s: %s %s", r.Name, r.Token, tok.Status, tok.Detail)
			}
		}
	}
	// A token where the role needs none is a remote-API failure.
	auditor, _ := LookupRole("auditor")
	for _, f := range CheckRole(context.Background(), auditor, RoleHost{TokenSet: true}) {
		if f.Check == "role.cloudflare_token" && (f.Status != source.StatusFail || f.Class != errclass.Remote || !strings.Contains(f.Fix, "drop CLOUDFLARE_API_TOKEN")) {
			t.Errorf("auditor with a token: %+v", f)
		}
	}
}

// TestCheckRoleLocalStore: a local directory has no credentials to probe: said, not guessed.
func TestCheckRoleLocalStore(t *testing.T) {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bh, _ := LookupRole("backup-host")
	var found bool
	for _, f := range CheckRole(context.Background(), bh, RoleHost{Store: st}) {
		if f.Check == "role.store" {
			found = f.Status == source.StatusSkip && strings.Contains(f.Detail, "not probed")
		}
		if strings.HasPrefix(f.Check, "role.store.") {
			t.Errorf("a local store was probed: %+v", f)
		}
	}
	if !found {
		t.Error("no role.store skip for a local store")
	}
}
