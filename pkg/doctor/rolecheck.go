package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/s3api"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// RoleComponent is the component name of the findings of 'doctor --role'.
const RoleComponent = "role"

// Held is one secret a host holds, and where: what to drop is named by Source.
type Held struct {
	// Source names the setting or file ("CFBACKUP_IDENTITY_FILE", "identity_file in the config
	// file", "file writer-….key"); never the value.
	Source string
	// Fix is how to drop it from this host.
	Fix string
}

// RoleHost is what a host holds, as the CLI found it.
type RoleHost struct {
	Identity     []Held
	WriterSecret []Held
	WorkerSecret []Held
	R2Keys       []Held
	SigningKey   []Held
	TokenSet     bool
	// Cloudflare builds the API client (only called when TokenSet).
	Cloudflare func() (*cloudflare.Client, error)
	// Store is the repository's location (nil when it could not be opened: the repository findings
	// say why).
	Store store.Store
}

// CheckRole compares what the host holds with what role needs: each excess is a failure naming
// what to drop, each lack a failure naming what to add. It writes nothing: edit permissions and
// S3 delete are probed by deleting names that do not exist, S3 write by a conditional create of an
// object that does (refused with 412 by a store that would have allowed it).
func CheckRole(ctx context.Context, role Role, h RoleHost) []source.Finding {
	var out []source.Finding
	out = append(out, secretFinding(role, "identity", "age identity", "it decrypts every snapshot", role.Identity, h.Identity, errclass.Key))
	out = append(out, secretFinding(role, "writer_secret", "writer secret", "it authenticates and signs snapshots", role.WriterSecret, h.WriterSecret, errclass.Key))
	out = append(out, secretFinding(role, "worker_secret", "Worker module secret", "it signs requests that read and write every Durable Object", role.WorkerSecret, h.WorkerSecret, errclass.Key))
	out = append(out, secretFinding(role, "r2_keys", "R2 source keys", "they read (or write) the R2 buckets backed up", role.R2Keys, h.R2Keys, errclass.Remote))
	out = append(out, secretFinding(role, "signing_key", "signing key", "it signs approvals of restores into protected targets (docs/APPROVAL.md)", role.SigningKey, h.SigningKey, errclass.Key))
	out = append(out, tokenFindings(ctx, role, h)...)
	if h.Store != nil {
		out = append(out, storeRoleFindings(ctx, role, h.Store)...)
	}
	return out
}

func secretFinding(role Role, check, what, why string, need Need, held []Held, c *errclass.Class) source.Finding {
	check = "role." + check
	var srcs, fixes []string
	for _, x := range held {
		srcs = append(srcs, x.Source)
		fixes = append(fixes, x.Fix)
	}
	switch {
	case len(held) > 0 && need == Forbidden:
		return source.Fail(RoleComponent, check, c,
			fmt.Sprintf("this host holds %s (%s), which %s must not hold: %s, and whoever takes this host takes it too", withArticle(what), strings.Join(srcs, ", "), a(role.Name), why),
			strings.Join(fixes, "; "))
	case len(held) == 0 && need == Required:
		return source.Fail(RoleComponent, check, c, fmt.Sprintf("%s needs the %s and this host holds none", a(role.Name), what),
			"see docs/ROLES.md for where the "+role.Name+" gets it")
	case len(held) > 0:
		return source.OK(RoleComponent, check, fmt.Sprintf("holds the %s (%s): %s %s it", what, strings.Join(srcs, ", "), a(role.Name), need))
	}
	return source.OK(RoleComponent, check, fmt.Sprintf("holds no %s: %s %s it", what, a(role.Name), need))
}

// a is the role's name with its article ("a backup-host", "an auditor").
func a(name string) string {
	if strings.ContainsAny(name[:1], "aeiou") {
		return "an " + name
	}
	return "a " + name
}

// tokenFindings: a token where the role needs none, then each permission group the token holds
// beyond the role's.
func tokenFindings(ctx context.Context, role Role, h RoleHost) []source.Finding {
	const check = "role.cloudflare_token"
	switch {
	case h.TokenSet && role.Token == Forbidden:
		return []source.Finding{source.Fail(RoleComponent, check, errclass.Remote,
			"this host holds a Cloudflare API token (CLOUDFLARE_API_TOKEN), which "+a(role.Name)+" never uses",
			"drop CLOUDFLARE_API_TOKEN from this host's environment (and revoke the token if no other host uses it)")}
	case !h.TokenSet && role.Token == Required:
		return []source.Finding{source.Fail(RoleComponent, check, errclass.Remote, a(role.Name)+" needs a Cloudflare API token and CLOUDFLARE_API_TOKEN is not set",
			"set CLOUDFLARE_API_TOKEN to a token with the permissions of examples/roles/"+role.Name+".cloudflare-token.json")}
	case !h.TokenSet:
		return []source.Finding{source.OK(RoleComponent, check, "holds no Cloudflare API token")}
	}
	cl, err := h.Cloudflare()
	if err != nil {
		return []source.Finding{source.Fail(RoleComponent, check, errclass.Remote, err.Error(), "set CLOUDFLARE_ACCOUNT_ID")}
	}
	out := []source.Finding{source.OK(RoleComponent, check, "holds a Cloudflare API token; probing the permission groups "+a(role.Name)+" must not hold")}
	for _, p := range AllPermissions {
		if !role.Allows(p) {
			out = append(out, excessPermission(ctx, cl, role, p))
		}
	}
	return out
}

// permissionProbe is how a permission group is proven without changing the account: a listing for a
// read group, a delete of a random name for an edit group.
func permissionProbe(ctx context.Context, cl *cloudflare.Client, p string) (how string, err error) {
	rnd := randHex(12)
	var path string
	switch p {
	case PermD1Read:
		path = "d1/database"
	case PermWorkersScriptsRead:
		path = "workers/scripts"
	case PermKVRead:
		path = "storage/kv/namespaces"
	case PermR2Read:
		path = "r2/buckets"
	case PermD1Edit:
		path = "d1/database/" + rnd[:8] + "-" + rnd[8:12] + "-4" + rnd[13:16] + "-8" + rnd[17:20] + "-" + randHex(6)
	case PermWorkersScriptsEdit:
		path = "workers/scripts/cfbackup-doctor-probe-" + rnd
	case PermKVWrite:
		path = "storage/kv/namespaces/" + randHex(16) + "/values/cfbackup-doctor-probe"
	case PermR2Write:
		path = "r2/buckets/cfbackup-doctor-probe-" + rnd
	}
	if strings.HasSuffix(p, " Read") {
		return "GET " + path + "?per_page=1", cl.Probe(ctx, path, map[string][]string{"per_page": {"1"}})
	}
	return "DELETE " + path + " (a name that does not exist)", cl.ProbeDelete(ctx, path)
}

func excessPermission(ctx context.Context, cl *cloudflare.Client, role Role, p string) source.Finding {
	check := "role.permission." + strings.ToLower(strings.ReplaceAll(p, " ", "_"))
	how, err := permissionProbe(ctx, cl, p)
	f := source.Finding{Component: RoleComponent, Check: check, Permission: p}
	switch {
	case err == nil || errors.Is(err, cloudflare.ErrNotFound):
		f.Status, f.Class = source.StatusFail, errclass.Remote
		f.Detail = fmt.Sprintf("the token holds %s (%s was authorized), which %s never needs", p, how, a(role.Name))
		f.Fix = fmt.Sprintf("remove %q from the API token (dashboard → My Profile → API Tokens → Edit); %s's token holds only: %s",
			p, a(role.Name), strings.Join(role.Permissions, ", "))
	case errors.Is(err, cloudflare.ErrAuth):
		f.Status, f.Detail = source.StatusOK, fmt.Sprintf("the token lacks %s, as %s should (%s was refused)", p, a(role.Name), how)
	default:
		f.Status, f.Detail = source.StatusSkip, fmt.Sprintf("could not tell whether the token holds %s: %v", p, err)
	}
	return f
}

// storeRoleFindings probes what the S3 credentials may do to the repository's data, without
// changing it: write (a conditional create of an existing manifest, which a store answers 412 if
// the credentials may write there and 403 if not) and delete (of a key under snapshots/ that does
// not exist).
func storeRoleFindings(ctx context.Context, role Role, st store.Store) []source.Finding {
	dp, ok := store.AsDeleteProber(st)
	if !ok {
		return []source.Finding{source.Skip(RoleComponent, "role.store", "a local repository: its directory's file permissions decide what this host may write and delete; not probed")}
	}
	return []source.Finding{writeProbe(ctx, role, st), deleteProbe(ctx, role, dp)}
}

func writeProbe(ctx context.Context, role Role, st store.Store) source.Finding {
	const check = "role.store.write"
	key := ""
	errStop := errors.New("found")
	err := st.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if layout.IsManifestKey(oi.Key) {
			key = oi.Key
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return source.Fail(RoleComponent, check, errclass.Failure, "cannot list "+layout.Snapshots+": "+err.Error(), "allow s3:ListBucket on the repository prefix")
	}
	if key == "" {
		return source.Skip(RoleComponent, check, "no snapshot yet: whether these credentials may write "+layout.Snapshots+" was not probed")
	}
	err = st.Put(ctx, key, bytes.NewReader(nil), store.PutOptions{IfNotExists: true})
	may := errors.Is(err, store.ErrExists)
	denied := !may && err != nil && s3api.HTTPStatus(err) == http.StatusForbidden
	how := "a conditional create of the existing " + key
	switch {
	case err == nil:
		return source.Fail(RoleComponent, check, errclass.Failure, how+" replaced it: the store ignores If-None-Match", "see docs/PROVIDER_COMPATIBILITY.md")
	case !may && !denied:
		return source.Skip(RoleComponent, check, "could not tell whether these credentials may write: "+err.Error())
	case may && !role.WritesData:
		return source.Fail(RoleComponent, check, errclass.Failure,
			fmt.Sprintf("the S3 credentials may write %s (%s was answered 412, not 403), which %s never does", layout.Snapshots, how, a(role.Name)),
			fmt.Sprintf("give this host keys whose policy allows s3:PutObject only under %s (examples/roles/%s.bucket-policy.json)", strings.Join(role.Puts, " "), role.Name))
	case denied && role.WritesData:
		return source.Fail(RoleComponent, check, errclass.Failure, "the S3 credentials may not write "+layout.Snapshots+" ("+how+" was refused): "+a(role.Name)+" must",
			"allow s3:PutObject as in examples/roles/"+role.Name+".bucket-policy.json")
	case may:
		return source.OK(RoleComponent, check, "the S3 credentials may write "+layout.Snapshots+" ("+how+" was answered 412), as "+a(role.Name)+" must")
	}
	return source.OK(RoleComponent, check, "the S3 credentials may not write "+layout.Snapshots+" ("+how+" was refused), as "+a(role.Name)+" should")
}

func deleteProbe(ctx context.Context, role Role, dp store.DeleteProber) source.Finding {
	const check = "role.store.delete"
	key := layout.DeleteProbeKey(layout.Snapshots, randHex(12))
	err := dp.ProbeDelete(ctx, key)
	denied := err != nil && s3api.HTTPStatus(err) == http.StatusForbidden
	how := "a delete of " + key + ", which does not exist,"
	switch {
	case err != nil && !denied:
		return source.Skip(RoleComponent, check, "could not tell whether these credentials may delete: "+err.Error())
	case err == nil && !role.Deletes:
		return source.Fail(RoleComponent, check, errclass.Failure,
			fmt.Sprintf("the S3 credentials may delete snapshots (%s was allowed), which %s never does: stolen, they erase the backups", how, a(role.Name)),
			"drop s3:DeleteObject (and s3:DeleteObjectVersion) from these credentials: use the policy of examples/roles/"+role.Name+".bucket-policy.json; prune and unlock run on the admin host (docs/ROLES.md)")
	case denied && role.Deletes:
		return source.Fail(RoleComponent, check, errclass.Failure, "the S3 credentials may not delete ("+how+" was refused): prune and unlock need it",
			"allow s3:DeleteObject as in examples/roles/admin.bucket-policy.json")
	case err == nil:
		return source.OK(RoleComponent, check, "the S3 credentials may delete ("+how+" was allowed), as "+a(role.Name)+" must")
	}
	return source.OK(RoleComponent, check, "the S3 credentials may not delete ("+how+" was refused with 403), as "+a(role.Name)+" should")
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withArticle puts "an" before the identity and "the" before the other secrets.
func withArticle(what string) string {
	if strings.HasPrefix(what, "age") {
		return "an " + what
	}
	return "the " + what
}
