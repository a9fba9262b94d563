package cli_test

import (
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cli"
)

// TestDoctorDurableObjects checks the Worker module in the real Workers runtime: with no object yet
// only reachability can be shown (a warning); once one exists a signed info request proves the module
// is mounted and the secrets match; a wrong secret is a failure (exit 5) that says which secrets to
// align, without printing either.
func TestDoctorDurableObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	a := startDOAccount(t)
	a.initRepo(t)
	code, out, errs := a.run(t, "doctor", "--component", "do")
	if code != 0 || !strings.Contains(out, "[warn] worker: the Worker at "+a.w.URL+" answers") || !strings.Contains(out, "signature is unproven") {
		t.Fatalf("no object yet: exit %d\n%s%s", code, out, errs)
	}
	get(t, a.w.URL+"/sessions/name:doctor/__test/seed?i=1")
	code, out, errs = a.run(t, "doctor", "--component", "do")
	if code != 0 || !strings.Contains(out, "[ok]   worker: the Worker module at "+a.w.URL+" accepted a signed info request for a SessionStore object") ||
		!strings.Contains(out, "[ok]   permission.workers_scripts_read") {
		t.Fatalf("healthy: exit %d\n%s%s", code, out, errs)
	}
	wrong := strings.Repeat("w", 40)
	a.env["CFBACKUP_WORKER_SECRET"] = wrong
	code, out, errs = a.run(t, "doctor", "--component", "do")
	if code != cli.ExitCloudflare || !strings.Contains(out, "[FAIL] worker: the Worker refused the signature") || !strings.Contains(out, "fix: give cfbackup the same secret as the Worker") {
		t.Fatalf("wrong secret: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out+errs, wrong) || strings.Contains(out+errs, doSecret) {
		t.Fatal("a secret was printed")
	}
}
