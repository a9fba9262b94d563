package doctor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/layout"
)

// The templates under examples/roles/ and the role table doctor --role checks are one matrix
// (docs/ROLES.md): a prefix or permission group added to one and not the other fails here.

const rolesDir = "../../examples/roles"

type policyStatement struct {
	Effect   string
	Action   []string
	Resource []string
}

func readPolicy(t *testing.T, role string) []policyStatement {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rolesDir, role+".bucket-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []policyStatement
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", role, err)
	}
	if doc.Version != "2012-10-17" || len(doc.Statement) == 0 {
		t.Fatalf("%s: not an AWS policy document", role)
	}
	return doc.Statement
}

// grants lists the object prefixes (relative to ${PREFIX}) that statements of effect allow action on.
func grants(sts []policyStatement, effect, action string) []string {
	var out []string
	for _, s := range sts {
		if s.Effect != effect || !slices.Contains(s.Action, action) {
			continue
		}
		for _, r := range s.Resource {
			p, ok := strings.CutPrefix(r, "arn:aws:s3:::${BUCKET}/${PREFIX}")
			if !ok {
				continue
			}
			out = append(out, strings.TrimSuffix(p, "*"))
		}
	}
	sort.Strings(out)
	return out
}

func TestRoleBucketPolicies(t *testing.T) {
	for _, r := range Roles {
		sts := readPolicy(t, r.Name)
		puts := grants(sts, "Allow", "s3:PutObject")
		want := append([]string(nil), r.Puts...)
		if r.Name == "admin" {
			want = []string{""} // every prefix
		}
		sort.Strings(want)
		if !slices.Equal(puts, want) {
			t.Errorf("%s: the policy allows PutObject under %q, the role table says %q", r.Name, puts, want)
		}
		if got := grants(sts, "Allow", "s3:GetObject"); !slices.Equal(got, []string{""}) {
			t.Errorf("%s: every role reads the whole repository; the policy allows GetObject under %q", r.Name, got)
		}
		allowDel, denyDel := grants(sts, "Allow", "s3:DeleteObject"), grants(sts, "Deny", "s3:DeleteObject")
		switch {
		case r.Deletes && (len(allowDel) == 0 || len(denyDel) > 0):
			t.Errorf("%s: deletes, but the policy allows DeleteObject under %q and denies it under %q", r.Name, allowDel, denyDel)
		case !r.Deletes && (len(allowDel) > 0 || !slices.Equal(denyDel, []string{""})):
			t.Errorf("%s: must never delete: the policy must deny DeleteObject on the whole repository and allow it nowhere (allows %q, denies %q)", r.Name, allowDel, denyDel)
		}
		for _, p := range r.Puts {
			if !strings.HasPrefix(p, "(") && !slices.Contains(append(layout.Swept(), layout.Snapshots, layout.Audit, layout.Locks, layout.VerifyRecords, layout.Holds, layout.Doctor, layout.Marks, layout.Rotations, layout.Plans, layout.Approvals, layout.Approvers, layout.Shards), p) {
				t.Errorf("%s: %q is no layout prefix", r.Name, p)
			}
		}
	}
}

func TestRoleTokenTemplates(t *testing.T) {
	for _, r := range Roles {
		b, err := os.ReadFile(filepath.Join(rolesDir, r.Name+".cloudflare-token.json"))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Role  string
			Token *struct {
				Groups   []string `json:"permission_groups"`
				Optional []string `json:"optional_permission_groups"`
			} `json:"cloudflare_api_token"`
			MustNot []string `json:"must_not_hold"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if doc.Role != r.Name {
			t.Errorf("%s: the template says role %q", r.Name, doc.Role)
		}
		var may []string
		if doc.Token != nil {
			may = append(append(may, doc.Token.Groups...), doc.Token.Optional...)
		}
		if (doc.Token == nil) != (r.Token == Forbidden) {
			t.Errorf("%s: token %s, but the template's cloudflare_api_token is %v", r.Name, r.Token, doc.Token)
		}
		sort.Strings(may)
		want := append([]string(nil), r.Permissions...)
		sort.Strings(want)
		if !slices.Equal(may, want) {
			t.Errorf("%s: the template grants %q, the role table %q", r.Name, may, want)
		}
		var not []string
		for _, p := range AllPermissions {
			if !r.Allows(p) {
				not = append(not, p)
			}
		}
		if !slices.Equal(doc.MustNot, not) {
			t.Errorf("%s: must_not_hold is %q, want %q (AllPermissions order)", r.Name, doc.MustNot, not)
		}
	}
}

func TestLookupRole(t *testing.T) {
	if got := strings.Join(RoleNames(), ","); got != "admin,approver,auditor,backup-host,restorer,verifier" {
		t.Fatalf("RoleNames = %s", got)
	}
	if _, ok := LookupRole("backup"); ok {
		t.Fatal("a prefix of a role's name is no role")
	}
	if r, ok := LookupRole("backup-host"); !ok || r.Identity != Forbidden || r.Deletes {
		t.Fatalf("backup-host = %+v", r)
	}
}
