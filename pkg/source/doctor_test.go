package source_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

type env struct{ cf *cloudflare.Client }

func (e env) Cloudflare() (*cloudflare.Client, error) { return e.cf, nil }
func (env) Setting(string) string                     { return "" }
func (env) Log() *slog.Logger                         { return slog.New(slog.DiscardHandler) }
func (env) Stderr() io.Writer                         { return io.Discard }
func (env) Interactive() bool                         { return false }

// TestProbeAll: a permission the token holds is ok; one it lacks fails (class remote, naming the
// permission to add) when the operator named the component, and is a warning when not; no usable
// token skips the probes.
func TestProbeAll(t *testing.T) {
	srv, base := cftest.Start(t, cftest.Options{})
	srv.AddToken("d1", cftest.D1Read)
	cl, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "d1", BaseURL: base + "/client/v4", MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	probes := []source.ProbeRequest{
		{Path: "d1/database", Permission: "D1 Read"},
		{Path: "storage/kv/namespaces", Permission: "Workers KV Storage Read"},
	}
	ctx := context.Background()
	named := source.ProbeAll(ctx, source.DiagnoseRequest{Env: env{cl}, TokenOK: true, Explicit: true}, "x", probes,
		source.Unprovable("x", "D1 Edit", nil, "it writes"))
	if len(named) != 3 || named[0].Status != source.StatusOK || named[1].Status != source.StatusFail || named[1].Class != errclass.Remote ||
		!strings.Contains(named[1].Fix, `add the permission "Workers KV Storage Read"`) || named[2].Status != source.StatusSkip ||
		!strings.Contains(named[2].Detail, "not checkable without writing") {
		t.Fatalf("named: %+v", named)
	}
	unasked := source.ProbeAll(ctx, source.DiagnoseRequest{Env: env{cl}, TokenOK: true}, "x", probes)
	if unasked[1].Status != source.StatusWarn || unasked[1].Class != nil || !strings.Contains(unasked[1].Detail, "needed only if") {
		t.Fatalf("unasked: %+v", unasked[1])
	}
	if got := source.ProbeAll(ctx, source.DiagnoseRequest{Env: env{cl}}, "x", probes); len(got) != 1 || got[0].Status != source.StatusSkip {
		t.Fatalf("no token: %+v", got)
	}
}
