// Package doctor checks, before a 3 a.m. restore finds out, what this host can do with its
// repository: reach it, read its format, authenticate its configuration with the writer secret,
// decrypt with the given identity, see its locks, agree with the S3 server's clock, and use the
// store's credentials for every operation cfbackup needs (put, get, list, delete, conditional create,
// Object Lock). Each check is a source.Finding with the fix; the components' own checks (Cloudflare
// permissions, endpoints) live in their packages (source.Diagnoser), so this package knows none.
// Nothing here writes outside the doctor/ scratch prefix (layout.Doctor), and what it writes there
// it deletes.
package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
	s3store "github.com/cfbackup/cfbackup/pkg/store/s3"
)

// Repository is the component name of the repository's findings.
const Repository = "repository"

// RepoOptions is what the repository checks need from the host.
type RepoOptions struct {
	// Store is the repository's location, as opened from the settings (no decorators).
	Store store.Store
	// Open opens and authenticates the repository the way every command does (the CLI's OpenRepo:
	// writer key file, init's file, or keys/writer.age with the identity).
	Open func(ctx context.Context, st store.Store) (*repo.Repo, error)
	// Identities are the configured identity's keys; IdentityErr why they could not be read;
	// IdentitySource says where they came from ("file key.txt"), "" when none is configured.
	Identities     []age.Identity
	IdentityErr    error
	IdentitySource string
	// Clock, when set, compares the host's clock with the S3 server's (nil for a local repository).
	Clock *ClockCheck
	// Role, when set ('doctor --role'), replaces the scratch-object store checks (a role without
	// delete could not remove the object) with CheckRole's probes, and makes a missing writer secret
	// expected for a role that must not hold one.
	Role *Role
	Log  *slog.Logger
	Now  func() time.Time
}

// CheckRepository runs the repository checks in order; a repository that cannot be opened stops
// them after saying why.
func CheckRepository(ctx context.Context, o RepoOptions) []source.Finding {
	if o.Now == nil {
		o.Now = time.Now
	}
	var out []source.Finding
	add := func(f ...source.Finding) { out = append(out, f...) }
	loc := o.Store.Location()
	r, openErr := o.Open(ctx, o.Store)
	if openErr != nil {
		raw, err := repo.Open(ctx, o.Store)
		if err != nil {
			add(unreachable(loc, err))
			if o.Clock != nil {
				add(o.Clock.Check(ctx))
			}
			return out
		}
		add(source.OK(Repository, "reachable", layout.Config+" read at "+loc))
		add(authFinding(raw, openErr))
		r = raw
	} else {
		add(source.OK(Repository, "reachable", layout.Config+" read at "+loc))
		add(authFinding(r, nil))
	}
	if o.Role != nil && o.Role.WriterSecret == Forbidden && openErr == nil && r.Key() == nil && !r.Legacy() {
		out[len(out)-1] = source.Skip(Repository, "config.authentic", "no writer secret on this host, as the "+o.Role.Name+" role wants: snapshots are listed unchecked")
	}
	add(formatFinding(r))
	add(identityFinding(ctx, r, o))
	add(lockFindings(ctx, r, o)...)
	if o.Clock != nil {
		add(o.Clock.Check(ctx))
	} else {
		add(source.Skip(Repository, "clock", "a local repository: no server clock to compare with"))
	}
	if o.Role == nil {
		add(StoreFindings(ctx, o.Store, o.Now)...)
	}
	add(objectLockFinding(ctx, r, o.Store))
	return out
}

func unreachable(loc string, err error) source.Finding {
	switch {
	case errors.Is(err, s3store.ErrNoSuchBucket):
		return source.Fail(Repository, "reachable", errclass.Repository, "the S3 bucket of "+loc+" does not exist: "+err.Error(),
			"check the bucket name in --repo / CFBACKUP_REPOSITORY and CFBACKUP_S3_ENDPOINT; create the bucket, then run 'cfbackup init'")
	case errors.Is(err, repo.ErrNotRepo):
		return source.Fail(Repository, "reachable", errclass.Repository, err.Error(),
			"check --repo / CFBACKUP_REPOSITORY, or create the repository with 'cfbackup init --recipient age1…'")
	case errors.Is(err, repo.ErrVersion):
		return source.Fail(Repository, "format", errclass.Repository, err.Error(), "upgrade cfbackup on this host")
	case errors.Is(err, repo.ErrObjectLock):
		return source.Fail(Repository, "object_lock", errclass.Repository, err.Error(),
			"the repository asks for Object Lock retention: use the S3 bucket it was made in, with Object Lock enabled (docs/RETENTION.md)")
	}
	return source.Fail(Repository, "reachable", errclass.Repository, "cannot read config.json at "+loc+": "+err.Error(),
		"check the network, CFBACKUP_S3_ENDPOINT and the S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
}

// authFinding says whether config.json authenticated with this host's writer secret.
func authFinding(r *repo.Repo, openErr error) source.Finding {
	const check = "config.authentic"
	switch {
	case errors.Is(openErr, repo.ErrUnauthenticated):
		return source.Fail(Repository, check, errclass.Integrity, openErr.Error(),
			"do not back up into this repository until you know why: check CFBACKUP_WRITER_KEY_FILE and CFBACKUP_REPOSITORY_KEY_ID (docs/SECURITY.md)")
	case openErr != nil:
		return source.Fail(Repository, check, errclass.Of(openErr), "the writer secret could not be found or opened: "+openErr.Error(),
			"set CFBACKUP_WRITER_KEY_FILE to the file 'cfbackup init' wrote, or pass an identity of one of the repository's recipients (--identity-file / CFBACKUP_IDENTITY_FILE)")
	case r.Legacy():
		return source.Skip(Repository, check, "format 1: config.json carries no MAC to check")
	case r.Key() == nil:
		return source.Fail(Repository, check, errclass.Key, "no writer secret on this host: config.json and snapshots cannot be authenticated, so backups, restores and verify refuse to run",
			"set CFBACKUP_WRITER_KEY_FILE to the file 'cfbackup init' wrote (a backup host), or pass --identity-file (a restore host)")
	}
	return source.OK(Repository, check, layout.Config+" authenticates with the writer secret (key id "+r.Key().ID()+")")
}

func formatFinding(r *repo.Repo) source.Finding {
	if r.Legacy() {
		return source.Warn(Repository, "format", fmt.Sprintf("format %d: readable, but read-only and unauthenticated", r.Config.Format),
			"upgrade it once with 'cfbackup migrate'")
	}
	return source.OK(Repository, "format", fmt.Sprintf("format %d (this cfbackup supports up to %d)", r.Config.Format, repo.FormatVersion))
}

// identityFinding proves the identity is one of the recipients by unwrapping keys/writer.age with it:
// the one thing a restore needs of it.
func identityFinding(ctx context.Context, r *repo.Repo, o RepoOptions) source.Finding {
	const check = "identity"
	switch {
	case o.IdentityErr != nil:
		return source.Fail(Repository, check, errclass.Key, "the identity ("+o.IdentitySource+") cannot be read: "+o.IdentityErr.Error(),
			"point --identity-file / CFBACKUP_IDENTITY_FILE at the age identity file 'cfbackup key generate' wrote")
	case o.IdentitySource == "":
		return source.Skip(Repository, check, "no identity given: this host can back up but not restore or verify --read-data (pass --identity-file to check one)")
	}
	if _, err := r.WriterSecret(ctx, o.Identities); err != nil {
		if errors.Is(err, repo.ErrWriterKey) {
			return source.Fail(Repository, check, errclass.Key, fmt.Sprintf("the identity (%s) is not one of the repository's %d recipient(s): it cannot decrypt snapshots", o.IdentitySource, len(r.Config.Recipients)),
				"use the identity file whose public key (age1…) is listed in config.json's recipients ('cfbackup key generate' printed it)")
		}
		return source.Fail(Repository, check, errclass.Failure, "cannot read the writer secret to test the identity: "+err.Error(), "check the store's read access")
	}
	return source.OK(Repository, check, fmt.Sprintf("the identity (%s) decrypts the repository's writer secret: it is one of its %d recipient(s)", o.IdentitySource, len(r.Config.Recipients)))
}

// lockFindings reports stale locks (to remove) and live ones (a prune running blocks backups).
func lockFindings(ctx context.Context, r *repo.Repo, o RepoOptions) []source.Finding {
	e := &engine.Engine{Repo: r, Log: o.Log, Now: o.Now}
	locks, err := e.Unlock(ctx, false, true) // dry run: lists, removes nothing
	if err != nil {
		return []source.Finding{source.Fail(Repository, "locks", errclass.Failure, "cannot list locks: "+err.Error(), "check the store's list access")}
	}
	var out []source.Finding
	for _, l := range locks {
		desc := fmt.Sprintf("%s lock %s of %q on %s (pid %d) since %s", l.Lock.Kind, l.Lock.ID, l.Lock.Command, l.Lock.Host, l.Lock.PID, l.Lock.Time.UTC().Format(time.RFC3339))
		if l.Stale {
			out = append(out, source.Warn(Repository, "locks", "stale "+desc+": its holder is gone",
				"run 'cfbackup unlock --stale-only' (an exclusive locker such as prune also removes it)"))
		} else {
			out = append(out, source.Warn(Repository, "locks", "held: "+desc+", expires "+l.Lock.Expires.UTC().Format(time.RFC3339),
				"wait for it to finish; commands that conflict with it exit 10 (pass --retry-lock 10m to wait)"))
		}
	}
	if len(out) == 0 {
		out = append(out, source.OK(Repository, "locks", "no locks held"))
	}
	return out
}

// StoreFindings proves the store's credentials do what cfbackup needs, on one scratch object under
// layout.Doctor: conditional create (If-None-Match: *), a second create refused, get, list, delete.
// The object is deleted whatever fails; scratch objects a killed run left (over an hour old) go too.
func StoreFindings(ctx context.Context, st store.Store, now func() time.Time) (out []source.Finding) {
	fail := func(check, detail, fix string) {
		out = append(out, source.Fail(Repository, check, errclass.Failure, detail, fix))
	}
	ok := func(check, detail string) { out = append(out, source.OK(Repository, check, detail)) }
	creds := "check that the store's credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the directory's permissions) allow "
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	key := layout.DoctorKey(hex.EncodeToString(rb[:]))
	body := []byte("cfbackup doctor " + now().UTC().Format(time.RFC3339Nano) + "\n")
	if err := st.Put(ctx, key, bytes.NewReader(body), store.PutOptions{IfNotExists: true}); err != nil {
		fail("store.put", "cannot create "+key+": "+err.Error(), creds+"PutObject under the repository prefix")
		return out
	}
	ok("store.put", "created "+key+" with a conditional create (If-None-Match: *)")
	defer func() {
		if err := deleteScratch(context.WithoutCancel(ctx), st, key); err != nil {
			out = append(out, source.Warn(Repository, "store.cleanup", "scratch object "+key+" could not be removed: "+err.Error(), "delete it by hand; it holds no data"))
		}
	}()
	err := st.Put(ctx, key, bytes.NewReader(body), store.PutOptions{IfNotExists: true})
	switch {
	case errors.Is(err, store.ErrExists):
		ok("store.conditional_create", "a second conditional create of the same key was refused, as manifests and locks rely on")
	case err == nil:
		fail("store.conditional_create", "a second conditional create of "+key+" replaced the object: this store ignores If-None-Match: *, so two backups could overwrite each other's manifests and locks do not exclude",
			"use a store that honours conditional writes (R2, AWS S3, MinIO, versitygw; docs/PROVIDER_COMPATIBILITY.md)")
	default:
		fail("store.conditional_create", "a second conditional create failed unexpectedly: "+err.Error(), creds+"PutObject with If-None-Match")
	}
	if got, err := readAll(ctx, st, key); err != nil || !bytes.Equal(got, body) {
		fail("store.get", fmt.Sprintf("reading %s back failed or differed (err %v)", key, err), creds+"GetObject")
	} else {
		ok("store.get", "read the scratch object back, byte for byte")
	}
	found, err := listed(ctx, st, key, now)
	switch {
	case err != nil:
		fail("store.list", "cannot list "+layout.Doctor+": "+err.Error(), creds+"ListObjectsV2 (ListBucket)")
	case !found:
		fail("store.list", "the scratch object is missing from a listing of "+layout.Doctor, "the store's listings are not consistent with its writes; see docs/PROVIDER_COMPATIBILITY.md")
	default:
		ok("store.list", "the scratch object appears in a listing")
	}
	if err := deleteScratch(ctx, st, key); err != nil {
		fail("store.delete", "cannot delete "+key+": "+err.Error(), creds+"DeleteObject (prune and unlock need it)")
	} else if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		fail("store.delete", "the scratch object is still there after its delete", "check the bucket's versioning and lifecycle settings (docs/RETENTION.md)")
	} else {
		ok("store.delete", "deleted the scratch object")
	}
	return out
}

// deleteScratch removes a scratch object, every version of it in a versioned bucket.
func deleteScratch(ctx context.Context, st store.Store, key string) error {
	var err error
	if l, ok := store.AsObjectLocker(st); ok {
		if on, lerr := l.ObjectLockEnabled(ctx); lerr == nil && on {
			err = l.DeleteVersions(ctx, key)
		} else {
			err = st.Delete(ctx, key)
		}
	} else {
		err = st.Delete(ctx, key)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func readAll(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 1<<16))
}

// listed lists layout.Doctor for key, removing scratch objects older than an hour on the way (a
// killed run's).
func listed(ctx context.Context, st store.Store, key string, now func() time.Time) (bool, error) {
	found := false
	var old []string
	err := st.List(ctx, layout.Doctor, func(oi store.ObjectInfo) error {
		if oi.Key == key {
			found = true
		} else if !oi.ModTime.IsZero() && now().Sub(oi.ModTime) > time.Hour {
			old = append(old, oi.Key)
		}
		return nil
	})
	for _, k := range old {
		_ = deleteScratch(ctx, st, k)
	}
	return found, err
}

// objectLockFinding checks that a repository that promises Object Lock retention sits in a bucket
// that has it enabled.
func objectLockFinding(ctx context.Context, r *repo.Repo, st store.Store) source.Finding {
	const check = "object_lock"
	ol := r.Config.ObjectLock
	if ol == nil {
		return source.Skip(Repository, check, "the repository does not use S3 Object Lock")
	}
	l, ok := store.AsObjectLocker(st)
	if !ok {
		return source.Fail(Repository, check, errclass.Repository, fmt.Sprintf("%s asks for %s retention of %d day(s), but this store has no Object Lock", layout.Config, ol.Mode, ol.Days),
			"use the S3 bucket the repository was made in, with Object Lock enabled (docs/RETENTION.md)")
	}
	on, err := l.ObjectLockEnabled(ctx)
	switch {
	case err != nil:
		return source.Fail(Repository, check, errclass.Failure, "cannot read the bucket's Object Lock configuration: "+err.Error(),
			"allow s3:GetBucketObjectLockConfiguration for these credentials")
	case !on:
		return source.Fail(Repository, check, errclass.Repository, fmt.Sprintf("%s asks for %s retention of %d day(s), but the bucket has Object Lock disabled: every write would fail", layout.Config, ol.Mode, ol.Days),
			"enable Object Lock on the bucket (or restore the repository into a bucket that has it; docs/RETENTION.md)")
	}
	return source.OK(Repository, check, fmt.Sprintf("Object Lock enabled on the bucket; writes get %s retention of %d day(s)", ol.Mode, ol.Days))
}
