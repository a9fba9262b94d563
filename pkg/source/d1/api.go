package d1

import (
	"context"
	"io"
	"time"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
)

// API is the part of the Cloudflare REST client (*cloudflare.Client) D1 backups and restores call.
// Declared here, by its consumer, so tests and other hosts can stand in for the account.
type API interface {
	ListDatabases(ctx context.Context) ([]cloudflare.Database, error)
	GetDatabase(ctx context.Context, id string) (cloudflare.Database, error)
	ResolveDatabase(ctx context.Context, nameOrID string) (cloudflare.Database, error)
	CreateDatabase(ctx context.Context, name string, opts ...cloudflare.CreateOptions) (cloudflare.Database, error)
	Raw(ctx context.Context, id, sql string, params ...string) ([]string, [][]any, error)
	Export(ctx context.Context, id string, o cloudflare.ExportOptions) (cloudflare.Export, error)
	Download(ctx context.Context, signedURL string) (io.ReadCloser, error)
	Import(ctx context.Context, id, md5hex string, size int64, open func() (io.ReadCloser, error)) (cloudflare.Import, error)
	CurrentBookmark(ctx context.Context, id string) (string, error)
	BookmarkAt(ctx context.Context, id string, t time.Time) (string, error)
	RestoreBookmark(ctx context.Context, id, bookmark string) (cloudflare.TimeTravelRestore, error)
}

var _ API = (*cloudflare.Client)(nil)
