package doctor

import (
	"sort"

	"github.com/cfbackup/cfbackup/pkg/layout"
)

// Need says whether a role holds a secret or a permission: doctor --role fails a host that holds
// what its role must not (the least-privilege check) and one that lacks what its role needs.
type Need string

// The three answers of a role's matrix (docs/ROLES.md).
const (
	// Forbidden: holding it is an excess; doctor says what to drop.
	Forbidden Need = "must not hold"
	// Optional: the role may hold it (a command it runs only sometimes needs it).
	Optional Need = "may hold"
	// Required: the role's commands fail without it.
	Required Need = "must hold"
)

// The Cloudflare API token permission groups cfbackup's calls need (as the dashboard names them;
// internal/cftest/tokens.go checks the same names).
const (
	PermD1Read             = "D1 Read"
	PermD1Edit             = "D1 Edit"
	PermWorkersScriptsRead = "Workers Scripts Read"
	PermWorkersScriptsEdit = "Workers Scripts Edit"
	PermKVRead             = "Workers KV Storage Read"
	PermKVWrite            = "Workers KV Storage Write"
	PermR2Read             = "Workers R2 Storage Read"
	PermR2Write            = "Workers R2 Storage Write"
)

// AllPermissions lists every permission group cfbackup's calls use, reads before edits.
var AllPermissions = []string{PermD1Read, PermD1Edit, PermWorkersScriptsRead, PermWorkersScriptsEdit, PermKVRead, PermKVWrite, PermR2Read, PermR2Write}

// Role is one job a host does with cfbackup, and what it must and must not hold to do it: the
// matrix of docs/ROLES.md, which the templates under examples/roles/ implement for S3 and
// Cloudflare and 'doctor --role' checks on a host.
type Role struct {
	Name    string
	Summary string
	// Commands are the cfbackup commands the role runs.
	Commands []string
	// Identity is the age identity (decrypts every snapshot); WriterSecret the writer key file
	// (authenticates and signs snapshots); Token the Cloudflare API token.
	Identity, WriterSecret, Token Need
	// WorkerSecret is the production Worker module's secret (component do); R2Keys the R2 S3 keys
	// of the source buckets (component r2). Only the hosts that back up or restore hold them.
	WorkerSecret, R2Keys Need
	// SigningKey is the operator's ed25519 signing key (docs/APPROVAL.md): an approver signs restore
	// plans with it, a restorer carrying out an approved plan proves who it is with it, an admin
	// registers approvers with it. A host that never approves must not hold one: whoever takes
	// it could be the second person of a two-person rule.
	SigningKey Need
	// Permissions are the token permission groups the role may hold; any other is an excess.
	Permissions []string
	// WritesData: the role puts snapshots and segments (backup) or rewrites the repository (admin).
	WritesData bool
	// Deletes: the role deletes objects (prune, unlock, key rotation); no other role may.
	Deletes bool
	// Puts are the layout prefixes the role creates objects under; DeletesUnder those it deletes
	// under (docs/ROLES.md; the bucket policies of examples/roles/ grant exactly these).
	Puts, DeletesUnder []string
}

// Roles are the roles of docs/ROLES.md, in the order the document lists them.
var Roles = []Role{
	{Name: "backup-host", Summary: "takes backups on a schedule; can add snapshots, cannot read them back or remove any",
		Commands: []string{"backup", "verify (quick)", "list", "stats", "doctor"},
		Identity: Forbidden, WriterSecret: Required, Token: Required, WorkerSecret: Optional, R2Keys: Optional, SigningKey: Forbidden,
		Permissions: []string{PermD1Read, PermD1Edit, PermWorkersScriptsRead, PermKVRead, PermR2Read},
		WritesData:  true,
		Puts:        []string{layout.Segments, layout.Snapshots, layout.Indexes, layout.Catalogues, layout.Journals, layout.Locks, layout.Audit, layout.VerifyRecords, layout.Doctor, layout.Shards}},
	{Name: "verifier", Summary: "proves snapshots restore (verify --read-data, test-restore) into scratch targets only",
		Commands: []string{"verify --read-data", "verify --all", "test-restore", "list", "report"},
		Identity: Required, WriterSecret: Optional, Token: Optional, WorkerSecret: Forbidden, R2Keys: Forbidden, SigningKey: Forbidden,
		Permissions: []string{PermWorkersScriptsRead, PermR2Read},
		Puts:        []string{layout.Locks, layout.Audit, layout.VerifyRecords}},
	{Name: "restorer", Summary: "restores snapshots into the Cloudflare account (disaster recovery)",
		Commands: []string{"restore", "restore --plan", "plans list", "plans show", "list", "verify", "doctor"},
		Identity: Required, WriterSecret: Optional, Token: Required, WorkerSecret: Optional, R2Keys: Optional, SigningKey: Optional,
		Permissions: AllPermissions,
		Puts:        []string{layout.Locks, layout.Audit, layout.Plans}},
	{Name: "approver", Summary: "reviews and signs restore plans for protected targets (the second person); places and releases legal holds",
		Commands: []string{"approve", "plans list", "plans show", "hold add", "hold release", "hold list", "list", "report"},
		Identity: Forbidden, WriterSecret: Required, Token: Forbidden, WorkerSecret: Forbidden, R2Keys: Forbidden, SigningKey: Required,
		Puts: []string{layout.Holds, layout.Audit, layout.Approvals}},
	{Name: "admin", Summary: "creates and maintains the repository: init, prune, unlock, key rotation, migrate, copy",
		Commands: []string{"init", "prune", "unlock", "key rotate", "key rewrap", "migrate", "copy", "hold", "approvers add", "doctor"},
		Identity: Optional, WriterSecret: Required, Token: Forbidden, WorkerSecret: Forbidden, R2Keys: Forbidden, SigningKey: Optional,
		WritesData: true, Deletes: true,
		Puts:         []string{"(every prefix)"},
		DeletesUnder: []string{layout.Segments, layout.Snapshots, layout.Indexes, layout.Catalogues, layout.Journals, layout.Locks, layout.Marks, layout.Rotations, layout.Doctor, layout.Shards}},
	{Name: "auditor", Summary: "reads the audit trail and reports; holds no key that decrypts or signs",
		Commands: []string{"report", "audit verify", "audit list", "list", "stats"},
		Identity: Forbidden, WriterSecret: Forbidden, Token: Forbidden, WorkerSecret: Forbidden, R2Keys: Forbidden, SigningKey: Forbidden,
		Puts: []string{layout.Audit}},
}

// LookupRole finds a role by name.
func LookupRole(name string) (Role, bool) {
	for _, r := range Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// RoleNames lists the roles' names, sorted.
func RoleNames() []string {
	out := make([]string, 0, len(Roles))
	for _, r := range Roles {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out
}

// Allows reports whether the role may hold permission group p.
func (r Role) Allows(p string) bool {
	for _, x := range r.Permissions {
		if x == p {
			return true
		}
	}
	return false
}
