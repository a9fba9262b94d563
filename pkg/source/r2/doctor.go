package r2

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// doctorBuckets bounds how many buckets doctor reads from: enough to prove the keys, few enough to
// stay quick on an account with hundreds.
const doctorBuckets = 3

// Diagnose proves the R2 keys (CFBACKUP_R2_ACCESS_KEY_ID / SECRET) reach the endpoint: it lists the
// buckets and reads one listing entry of the first few. Writes (restores into a bucket) are not
// proven: R2 keys are often read-only on purpose.
func (*component) Diagnose(ctx context.Context, req source.DiagnoseRequest) []source.Finding {
	env := req.Env
	if env.Setting("r2_access_key_id") == "" || env.Setting("r2_secret_access_key") == "" {
		return []source.Finding{source.NotConfigured(req, Component, "keys", "CFBACKUP_R2_ACCESS_KEY_ID / CFBACKUP_R2_SECRET_ACCESS_KEY are not set",
			"create an R2 API token (R2 → Manage API tokens; Object Read for backups, Read & Write for restores into buckets) and set both variables")}
	}
	cl, err := newClient(env)
	if err != nil {
		return []source.Finding{source.Fail(Component, "keys", errclass.Usage, err.Error(), "check CFBACKUP_R2_ENDPOINT")}
	}
	buckets, err := cl.ListBuckets(ctx)
	switch {
	case wrongKeys(err):
		return []source.Finding{source.Fail(Component, "keys", errclass.Remote, "R2 refuses the keys: "+err.Error(),
			"check CFBACKUP_R2_ACCESS_KEY_ID / CFBACKUP_R2_SECRET_ACCESS_KEY: the pair must come from the same R2 API token")}
	case errors.Is(err, ErrAccessDenied):
		return []source.Finding{source.Warn(Component, "buckets", "the R2 keys may not list buckets ("+err.Error()+"): a token scoped to some buckets cannot",
			"name the buckets with --r2-bucket when backing up; a backup without it needs keys that list buckets")}
	case err != nil:
		return []source.Finding{source.Fail(Component, "buckets", errclass.Remote, "cannot reach R2 at "+env.Setting("r2_endpoint")+": "+err.Error(),
			"check CFBACKUP_R2_ENDPOINT (https://<account id>.r2.cloudflarestorage.com) and the network")}
	case len(buckets) == 0:
		return []source.Finding{source.Warn(Component, "buckets", "the R2 keys see no bucket", "check that the keys belong to the account that holds the buckets")}
	}
	out := []source.Finding{source.OK(Component, "buckets", fmt.Sprintf("the R2 keys list %d bucket(s)", len(buckets)))}
	stop := errors.New("enough")
	for i, b := range buckets {
		if i == doctorBuckets {
			break
		}
		err := cl.List(ctx, b, "", func(Object) error { return stop })
		if err != nil && !errors.Is(err, stop) {
			out = append(out, source.Fail(Component, "bucket.read", errclass.Remote, "cannot list bucket "+b+": "+err.Error(),
				"give the R2 token Object Read on bucket "+b))
			continue
		}
		out = append(out, source.OK(Component, "bucket.read", "bucket "+b+" is readable with the R2 keys"))
	}
	return out
}

// wrongKeys tells keys that do not exist or do not match (the pair is wrong) from keys that are
// valid but may not list buckets (a token scoped to some buckets).
func wrongKeys(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	c := ae.ErrorCode()
	return c == "SignatureDoesNotMatch" || c == "InvalidAccessKeyId"
}
