package approval

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func key(t *testing.T) *SigningKey {
	t.Helper()
	k, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testPlan(now time.Time) *Plan {
	return &Plan{Version: PlanVersion, Snapshot: "0123abcd", Component: "d1", Sources: []string{"app"}, Targets: []string{"d1:app"},
		Items: 5, Bytes: 1000, Request: "r1", Requester: Requester{Actor: "alice@host1", Host: "host1"}, Created: now, Expires: now.Add(time.Hour)}
}

// TestCheck covers every way an approval must not count, against one that does.
func TestCheck(t *testing.T) {
	now := time.Now()
	admin, bob, alice, rogue := key(t), key(t), key(t), key(t)
	trusted := []PublicKey{admin.Public()}
	regBob, _ := Register(admin, "bob", bob.Public(), "admin", now)
	regAlice, _ := Register(admin, "alice", alice.Public(), "admin", now)
	regMallory, _ := Register(rogue, "mallory", rogue.Public(), "backup-host", now) // self-registered: untrusted admin key
	approvers := []Approver{*regBob, *regAlice, *regMallory}
	p := testPlan(now)
	other := testPlan(now)
	other.Targets = []string{"d1:other"}

	forged := *Approve(bob, "bob", p, now, now.Add(time.Hour))
	forged.Expires = now.Add(100 * time.Hour) // edited after signing
	wrongKey := *Approve(rogue, "bob", p, now, now.Add(time.Hour))
	for name, tc := range map[string]struct {
		a    Approval
		want error
	}{
		"valid":           {*Approve(bob, "bob", p, now, now.Add(time.Hour)), nil},
		"requester":       {*Approve(alice, "alice", p, now, now.Add(time.Hour)), ErrSelfApproval},
		"expired":         {*Approve(bob, "bob", p, now.Add(-2*time.Hour), now.Add(-time.Minute)), ErrPlanExpired},
		"other plan":      {*Approve(bob, "bob", other, now, now.Add(time.Hour)), ErrNotApproved},
		"untrusted admin": {*Approve(rogue, "mallory", p, now, now.Add(time.Hour)), ErrUntrusted},
		"unregistered":    {*Approve(rogue, "eve", p, now, now.Add(time.Hour)), ErrUntrusted},
		"edited":          {forged, ErrUntrusted},
		"wrong key":       {wrongKey, ErrUntrusted},
	} {
		a, problems := Check(p, []Approval{tc.a}, approvers, trusted, now, nil)
		if tc.want == nil {
			if a == nil {
				t.Errorf("%s: refused: %v", name, problems)
			}
			continue
		}
		if a != nil || len(problems) != 1 {
			t.Errorf("%s: accepted (%v)", name, problems)
			continue
		}
		if !strings.Contains(problems[0], tc.a.Approver) {
			t.Errorf("%s: problem does not name the approver: %s", name, problems[0])
		}
		var target error
		switch {
		case errors.Is(tc.want, ErrSelfApproval):
			target = errors.New("requested this restore")
		case errors.Is(tc.want, ErrPlanExpired):
			target = errors.New("expired at")
		case errors.Is(tc.want, ErrNotApproved):
			target = errors.New("another plan")
		default:
			target = errors.New("")
		}
		if !strings.Contains(problems[0], target.Error()) {
			t.Errorf("%s: %s", name, problems[0])
		}
	}
	// The requester's host key cannot approve under another name either.
	p2 := testPlan(now)
	p2.Requester.Key = bob.Public().Fingerprint()
	if a, _ := Check(p2, []Approval{*Approve(bob, "bob", p2, now, now.Add(time.Hour))}, approvers, trusted, now, nil); a != nil {
		t.Error("approval with the requester's own key accepted")
	}
	// Nor can the operator carrying the restore out, whatever actor the plan names.
	if a, problems := Check(p, []Approval{*Approve(bob, "bob", p, now, now.Add(time.Hour))}, approvers, trusted, now, bob.Public()); a != nil || !strings.Contains(problems[0], "carrying this restore out") {
		t.Errorf("approval with the executor's key accepted: %v", problems)
	}
	if name, err := RegisteredName(approvers, bob.Public(), trusted); err != nil || name != "bob" {
		t.Errorf("RegisteredName(bob) = %q, %v", name, err)
	}
	if _, err := RegisteredName(approvers, rogue.Public(), trusted); !errors.Is(err, ErrUntrusted) {
		t.Errorf("RegisteredName(rogue) = %v", err)
	}
}

// TestAuthorize runs the stored path: plan written, approval stored, a changed request refused, the
// plan used once, a plan edited in the bucket refused.
func TestAuthorize(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	now := time.Now()
	admin, bob, alice := key(t), key(t), key(t)
	trusted := []PublicKey{admin.Public()}
	reg, _ := Register(admin, "bob", bob.Public(), "admin", now)
	if err := PutApprover(ctx, st, reg); err != nil {
		t.Fatal(err)
	}
	if err := PutApprover(ctx, st, reg); err == nil {
		t.Error("second registration of bob accepted")
	}
	p := testPlan(now)
	id, err := PutPlan(ctx, st, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Authorize(ctx, st, id, p, trusted, now, alice.Public()); !errors.Is(err, ErrNotApproved) || !strings.Contains(err.Error(), "cfbackup approve "+id) {
		t.Fatalf("unapproved plan: %v", err)
	}
	if err := PutApproval(ctx, st, Approve(bob, "bob", p, now, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	changed := testPlan(now)
	changed.Request = "r2"
	if _, _, err := Authorize(ctx, st, id, changed, trusted, now, alice.Public()); !errors.Is(err, ErrPlanChanged) {
		t.Fatalf("changed request: %v", err)
	}
	if _, _, err := Authorize(ctx, st, id, p, nil, now, alice.Public()); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("no trusted keys: %v", err)
	}
	if _, a, err := Authorize(ctx, st, id, p, trusted, now, alice.Public()); err != nil || a.Approver != "bob" {
		t.Fatalf("approved plan: %v", err)
	}
	if _, _, err := Authorize(ctx, st, id, p, trusted, now, alice.Public()); !errors.Is(err, ErrPlanExpired) {
		t.Fatalf("second use: %v", err)
	}
	// An approval of plan A copied next to plan B does not count for B.
	q := testPlan(now)
	q.Items = 6
	qid, _ := PutPlan(ctx, st, q)
	a := Approve(bob, "bob", p, now, now.Add(time.Hour))
	a.Plan = qid
	if err := PutApproval(ctx, st, a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Authorize(ctx, st, qid, q, trusted, now, alice.Public()); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("copied approval: %v", err)
	}
	// A plan edited in the bucket no longer hashes to its id.
	raw := strings.Replace(string(q.Canonical()), `"items":6`, `"items":7`, 1)
	_ = st.Delete(ctx, layout.PlanKey(qid))
	_ = st.Put(ctx, layout.PlanKey(qid), strings.NewReader(raw), putOpts())
	if _, err := GetPlan(ctx, st, qid); !errors.Is(err, ErrPlanChanged) {
		t.Fatalf("edited plan: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k, text, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "k")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	k2, err := ReadSigningKeyFile(p)
	if err != nil || !k2.Public().Equal(k.Public()) {
		t.Fatalf("read back: %v", err)
	}
	if pub, err := ParsePublicKey(k.Public().String()); err != nil || !pub.Equal(k.Public()) {
		t.Fatalf("public round trip: %v", err)
	}
	for _, bad := range []string{"", "age1xyz", PublicPrefix + "AAAA"} {
		if _, err := ParsePublicKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePublicKey(%q) = %v", bad, err)
		}
	}
	if err := CheckName("Bob/../x"); err == nil {
		t.Error("bad name accepted")
	}
	if !SameActor("alice", "alice@host") || !SameActor("Alice", "alice") || SameActor("bob", "alice@host") {
		t.Error("SameActor")
	}
}

func putOpts() store.PutOptions { return store.PutOptions{} }

// BenchmarkCheck is what a restore with --plan spends verifying one approval (two signatures).
func BenchmarkCheck(b *testing.B) {
	now := time.Now()
	admin, _, _ := GenerateKey()
	bob, _, _ := GenerateKey()
	reg, _ := Register(admin, "bob", bob.Public(), "admin", now)
	p := testPlan(now)
	as := []Approval{*Approve(bob, "bob", p, now, now.Add(time.Hour))}
	for b.Loop() {
		if a, _ := Check(p, as, []Approver{*reg}, []PublicKey{admin.Public()}, now, nil); a == nil {
			b.Fatal("refused")
		}
	}
}
