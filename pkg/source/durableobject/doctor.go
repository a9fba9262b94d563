package durableobject

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// UsesCloudflareAPI: namespaces and object ids come from the REST API.
func (*component) UsesCloudflareAPI() bool { return true }

// Diagnose proves Workers Scripts Read (namespaces and objects are listed with it), then asks the
// Worker module of CFBACKUP_WORKER_URL for one object's info with a signed request: the answer
// proves the module is mounted and the secrets match. info reads nothing but counts; it writes
// nothing.
func (*component) Diagnose(ctx context.Context, req source.DiagnoseRequest) []source.Finding {
	out := source.ProbeAll(ctx, req, Component, []source.ProbeRequest{
		{Path: "workers/durable_objects/namespaces", Permission: "Workers Scripts Read", Needed: []source.Verb{source.VerbBackup, source.VerbRestore}},
	})
	if req.Env.Setting("worker_url") == "" {
		return append(out, source.NotConfigured(req, Component, "worker", "CFBACKUP_WORKER_URL is not set",
			"set CFBACKUP_WORKER_URL to the Worker that routes /__cfbackup/ to your Durable Objects, and CFBACKUP_WORKER_SECRET (docs/DURABLE_OBJECTS.md)"))
	}
	cl, err := WorkerClient(req.Env)
	if err != nil {
		return append(out, source.Fail(Component, "worker", errclass.Usage, err.Error(), "see docs/DURABLE_OBJECTS.md for the settings"))
	}
	cl.Attempts = 2
	return append(out, diagnoseWorker(ctx, req, cl))
}

// diagnoseWorker sends one signed info request to an object the account lists; with no object to ask
// it checks only that the Worker answers.
func diagnoseWorker(ctx context.Context, req source.DiagnoseRequest, cl *Client) source.Finding {
	class, id := "", ""
	if req.TokenOK {
		if cf, err := req.Env.Cloudflare(); err == nil {
			class, id = firstObject(ctx, cf)
		}
	}
	if id == "" {
		return reachable(ctx, cl)
	}
	_, err := cl.Info(ctx, class, id)
	switch {
	case err == nil:
		return source.OK(Component, "worker", fmt.Sprintf("the Worker module at %s accepted a signed info request for a %s object: mounted, secrets match", cl.BaseURL, class))
	case errors.Is(err, ErrAuth):
		return source.Fail(Component, "worker", errclass.Remote, "the Worker refused the signature: "+err.Error(),
			"give cfbackup the same secret as the Worker: CFBACKUP_WORKER_SECRET = the value of 'wrangler secret put CFBACKUP_SECRET'; check this host's clock (±300 s)")
	case errors.Is(err, ErrNotConfigured):
		return source.Fail(Component, "worker", errclass.Remote, err.Error(), "set CFBACKUP_SECRET on the Worker (at least 32 characters): wrangler secret put CFBACKUP_SECRET")
	case errors.Is(err, ErrNotFound):
		return source.Fail(Component, "worker", errclass.Remote, err.Error(), "mount the cfbackup module in the class and route /__cfbackup/ in the Worker (docs/DURABLE_OBJECTS.md)")
	}
	return source.Fail(Component, "worker", errclass.Remote, "the Worker did not answer as expected: "+err.Error(), "check CFBACKUP_WORKER_URL and that the Worker is deployed")
}

// firstObject finds one object (of a class the account lists) to ask.
func firstObject(ctx context.Context, cf *cloudflare.Client) (class, id string) {
	nss, err := cf.ListNamespaces(ctx)
	if err != nil {
		return "", ""
	}
	stop := errors.New("found")
	for _, ns := range nss {
		if ns.Class == "" {
			continue
		}
		_ = cf.ListObjects(ctx, ns.ID, 1, func(objs []cloudflare.DurableObject) error {
			if len(objs) > 0 {
				class, id = ns.Class, objs[0].ID
				return stop
			}
			return nil
		})
		if id != "" {
			return class, id
		}
	}
	return "", ""
}

// reachable checks only that the Worker answers an unsigned request (it refuses it, naming nothing).
func reachable(ctx context.Context, cl *Client) source.Finding {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(rctx, http.MethodGet, cl.BaseURL+PathPrefix, nil)
	if err != nil {
		return source.Fail(Component, "worker", errclass.Usage, err.Error(), "check CFBACKUP_WORKER_URL")
	}
	resp, err := cl.httpClient().Do(r)
	if err != nil {
		return source.Fail(Component, "worker", errclass.Remote, "the Worker at "+cl.BaseURL+" cannot be reached: "+err.Error(), "check CFBACKUP_WORKER_URL and the network")
	}
	resp.Body.Close()
	return source.Warn(Component, "worker", fmt.Sprintf("the Worker at %s answers (HTTP %d), but the account lists no Durable Object to send a signed request to: the signature is unproven", cl.BaseURL, resp.StatusCode),
		"run doctor again once an object exists; the first backup proves the signature")
}
