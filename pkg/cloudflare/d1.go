package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloudflare/cloudflare-go/v7/d1"
)

// Database is what cfbackup needs to know about a D1 database.
type Database struct {
	UUID      string
	Name      string
	Version   string // "production" has Time Travel; "alpha" does not
	FileSize  int64
	NumTables int
	CreatedAt time.Time
}

// ListDatabases returns every D1 database in the account, following page-numbered pagination.
func (c *Client) ListDatabases(ctx context.Context) ([]Database, error) {
	var p d1.DatabaseListParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.PerPage.Value, p.PerPage.Present = 100, true
	it := c.db.ListAutoPaging(ctx, p)
	var out []Database
	for it.Next() {
		r := it.Current()
		out = append(out, Database{UUID: r.UUID, Name: r.Name, Version: r.Version, CreatedAt: r.CreatedAt})
	}
	if err := it.Err(); err != nil {
		return nil, classify(err, "list D1 databases")
	}
	return out, nil
}

// GetDatabase returns one database by UUID.
func (c *Client) GetDatabase(ctx context.Context, id string) (Database, error) {
	var p d1.DatabaseGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	r, err := c.db.Get(ctx, id, p)
	if err != nil {
		return Database{}, classify(err, fmt.Sprintf("get D1 database %s", id))
	}
	return Database{UUID: r.UUID, Name: r.Name, Version: r.Version, FileSize: int64(r.FileSize), NumTables: int(r.NumTables), CreatedAt: r.CreatedAt}, nil
}

// ResolveDatabase finds a database by name or UUID. An unknown one is ErrNotFound with the names that exist.
func (c *Client) ResolveDatabase(ctx context.Context, nameOrID string) (Database, error) {
	all, err := c.ListDatabases(ctx)
	if err != nil {
		return Database{}, err
	}
	for _, d := range all {
		if d.UUID == nameOrID || d.Name == nameOrID {
			return c.GetDatabase(ctx, d.UUID)
		}
	}
	names := make([]string, 0, len(all))
	for _, d := range all {
		names = append(names, d.Name)
	}
	return Database{}, fmt.Errorf("D1 database %q: %w (databases in this account: %s)", nameOrID, ErrNotFound, strings.Join(names, ", "))
}

// CreateOptions place a new database: PrimaryLocationHint (wnam, enam, weur, eeur, apac, oc) and
// Jurisdiction (eu, fedramp, us; it overrides the hint). A disaster recovery into a new account
// puts the database back where the data is allowed to live.
type CreateOptions struct {
	PrimaryLocationHint string
	Jurisdiction        string
}

// LocationHints and Jurisdictions are the values POST /accounts/{id}/d1/database accepts.
var (
	LocationHints = []string{"wnam", "enam", "weur", "eeur", "apac", "oc"}
	Jurisdictions = []string{"eu", "fedramp", "us"}
)

// CheckCreateOptions refuses a location hint or jurisdiction Cloudflare does not know, before any
// request is sent.
func CheckCreateOptions(o CreateOptions) error {
	if o.PrimaryLocationHint != "" && !d1.DatabaseNewParamsPrimaryLocationHint(o.PrimaryLocationHint).IsKnown() {
		return fmt.Errorf("location-hint %q is not a D1 location: use one of %s", o.PrimaryLocationHint, strings.Join(LocationHints, ", "))
	}
	if o.Jurisdiction != "" && !d1.DatabaseNewParamsJurisdiction(o.Jurisdiction).IsKnown() {
		return fmt.Errorf("jurisdiction %q is not a D1 jurisdiction: use one of %s", o.Jurisdiction, strings.Join(Jurisdictions, ", "))
	}
	return nil
}

// CreateDatabase makes a new, empty database (restore --to-database NEW --create), placed as the
// first CreateOptions say (none: near the caller, as Cloudflare decides).
func (c *Client) CreateDatabase(ctx context.Context, name string, opts ...CreateOptions) (Database, error) {
	var p d1.DatabaseNewParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.Name.Value, p.Name.Present = name, true
	if len(opts) > 0 {
		o := opts[0]
		if o.PrimaryLocationHint != "" {
			p.PrimaryLocationHint.Value, p.PrimaryLocationHint.Present = d1.DatabaseNewParamsPrimaryLocationHint(o.PrimaryLocationHint), true
		}
		if o.Jurisdiction != "" {
			p.Jurisdiction.Value, p.Jurisdiction.Present = d1.DatabaseNewParamsJurisdiction(o.Jurisdiction), true
		}
	}
	r, err := c.db.New(ctx, p)
	if err != nil {
		return Database{}, classify(err, fmt.Sprintf("create D1 database %q", name))
	}
	return Database{UUID: r.UUID, Name: r.Name, Version: r.Version, CreatedAt: r.CreatedAt}, nil
}

// Raw runs one read query and returns column names and rows (values as decoded JSON).
// Values that must survive exactly (big integers, BLOBs) should be selected through SQLite's quote().
func (c *Client) Raw(ctx context.Context, id, sql string, params ...string) ([]string, [][]any, error) {
	var body d1.DatabaseRawParamsBodyD1SingleQuery
	body.Sql.Value, body.Sql.Present = sql, true
	if len(params) > 0 {
		body.Params.Value, body.Params.Present = params, true
	}
	var p d1.DatabaseRawParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.Body = body
	res, err := c.db.Raw(ctx, id, p)
	if err != nil {
		return nil, nil, classify(err, "query D1 database")
	}
	if len(res.Result) == 0 {
		return nil, nil, nil
	}
	last := res.Result[len(res.Result)-1]
	return last.Results.Columns, last.Results.Rows, nil
}

// ExportOptions narrows an export (D1's dump_options).
type ExportOptions struct {
	Tables   []string
	NoData   bool
	NoSchema bool
	// Progress, if set, receives the export's log lines as they arrive.
	Progress func(msg string)
}

// Export is a finished export: where to download the dump and the point in time it represents.
type Export struct {
	AtBookmark string
	SignedURL  string
	Filename   string
	// Blocked is how long the export task ran; D1 serves no queries during it.
	Blocked time.Duration
}

// Export runs D1's polling export to completion. An unknown status counts as still running.
func (c *Client) Export(ctx context.Context, id string, o ExportOptions) (Export, error) {
	var p d1.DatabaseExportParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.OutputFormat.Value, p.OutputFormat.Present = d1.DatabaseExportParamsOutputFormatPolling, true
	var dopt d1.DatabaseExportParamsDumpOptions
	if len(o.Tables) > 0 {
		dopt.Tables.Value, dopt.Tables.Present = o.Tables, true
	}
	dopt.NoData.Value, dopt.NoData.Present = o.NoData, true
	dopt.NoSchema.Value, dopt.NoSchema.Present = o.NoSchema, true
	p.DumpOptions.Value, p.DumpOptions.Present = dopt, true

	start := c.cfg.Now()
	wait := c.cfg.PollInterval
	for {
		r, err := c.db.Export(ctx, id, p)
		if err != nil {
			return Export{}, classify(err, "export D1 database")
		}
		if o.Progress != nil {
			for _, m := range r.Messages {
				o.Progress(m)
			}
		}
		switch r.Status {
		case d1.DatabaseExportResponseStatusComplete:
			if r.Result.SignedURL == "" {
				return Export{}, fmt.Errorf("export D1 database: %w: completed without a signed URL", ErrTaskFailed)
			}
			return Export{AtBookmark: r.AtBookmark, SignedURL: r.Result.SignedURL, Filename: r.Result.Filename, Blocked: c.cfg.Now().Sub(start)}, nil
		case d1.DatabaseExportResponseStatusError:
			return Export{}, fmt.Errorf("export D1 database: %w: %s", ErrTaskFailed, r.Error)
		}
		if r.AtBookmark != "" {
			p.CurrentBookmark.Value, p.CurrentBookmark.Present = r.AtBookmark, true
		}
		if err := sleep(ctx, wait); err != nil {
			return Export{}, err
		}
		wait = nextPoll(wait)
	}
}

// Download opens a signed URL (a plain GET with no API token). An expired or refused URL is ErrSignedURLExpired.
func (c *Client) Download(ctx context.Context, signedURL string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, signedURL, nil)
	if err != nil {
		return nil, fmt.Errorf("download export: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, classify(err, "download export")
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("download export: %w (HTTP %d)", ErrSignedURLExpired, resp.StatusCode)
	}
	return nil, fmt.Errorf("download export: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
}

// Import is the outcome of an import.
type Import struct {
	FinalBookmark string
	NumQueries    int64
}

// Import loads one SQL file into a database: init (md5) → PUT to the upload URL → ingest → poll.
// open is called to (re)produce the file's bytes, exactly size bytes whose MD5 is md5hex; it may be
// called more than once. D1 rolls a failed import back, so a retry is safe.
func (c *Client) Import(ctx context.Context, id, md5hex string, size int64, open func() (io.ReadCloser, error)) (Import, error) {
	acct := func() d1.DatabaseImportParams {
		var p d1.DatabaseImportParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		return p
	}
	var init d1.DatabaseImportParamsBodyInit
	init.Action.Value, init.Action.Present = d1.DatabaseImportParamsBodyInitActionInit, true
	init.Etag.Value, init.Etag.Present = md5hex, true
	p := acct()
	p.Body = init
	r, err := c.db.Import(ctx, id, p)
	if err != nil {
		return Import{}, classify(err, "import into D1 (init)")
	}
	if r.UploadURL != "" {
		if err := c.upload(ctx, r.UploadURL, md5hex, size, open); err != nil {
			return Import{}, err
		}
		var ing d1.DatabaseImportParamsBodyIngest
		ing.Action.Value, ing.Action.Present = d1.DatabaseImportParamsBodyIngestActionIngest, true
		ing.Etag.Value, ing.Etag.Present = md5hex, true
		ing.Filename.Value, ing.Filename.Present = r.Filename, true
		p := acct()
		p.Body = ing
		r, err = c.db.Import(ctx, id, p)
		if err != nil {
			return Import{}, classify(err, "import into D1 (ingest)")
		}
	}
	wait := c.cfg.PollInterval
	for {
		switch r.Status {
		case d1.DatabaseImportResponseStatusComplete:
			return Import{FinalBookmark: r.Result.FinalBookmark, NumQueries: int64(r.Result.NumQueries)}, nil
		case d1.DatabaseImportResponseStatusError:
			return Import{}, fmt.Errorf("import into D1: %w: %s (D1 rolled the database back to its state before the import)", ErrTaskFailed, r.Error)
		}
		if r.Error == "Not currently importing anything." {
			return Import{}, fmt.Errorf("import into D1: %w: %s", ErrTaskFailed, r.Error)
		}
		if err := sleep(ctx, wait); err != nil {
			return Import{}, err
		}
		wait = nextPoll(wait)
		var poll d1.DatabaseImportParamsBodyPoll
		poll.Action.Value, poll.Action.Present = d1.DatabaseImportParamsBodyPollActionPoll, true
		poll.CurrentBookmark.Value, poll.CurrentBookmark.Present = r.AtBookmark, true
		p := acct()
		p.Body = poll
		r, err = c.db.Import(ctx, id, p)
		if err != nil {
			return Import{}, classify(err, "import into D1 (poll)")
		}
	}
}

func (c *Client) upload(ctx context.Context, uploadURL, md5hex string, size int64, open func() (io.ReadCloser, error)) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		body, err := open()
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, uploadURL, struct{ io.Reader }{body})
		if err != nil {
			body.Close()
			return fmt.Errorf("upload import file: %w", err)
		}
		req.ContentLength = size
		resp, err := c.http.Do(req)
		body.Close()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lastErr = classify(err, "upload import file")
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			etag := strings.Trim(resp.Header.Get("ETag"), `"`)
			if etag != "" && etag != md5hex {
				return fmt.Errorf("upload import file: %w: server stored MD5 %s, expected %s", ErrTaskFailed, etag, md5hex)
			}
			return nil
		}
		if resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("upload import file: %w (HTTP 403)", ErrSignedURLExpired)
		}
		lastErr = fmt.Errorf("upload import file: HTTP %d", resp.StatusCode)
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return lastErr
		}
	}
	return lastErr
}

// CurrentBookmark returns the Time Travel bookmark of the database's present state.
func (c *Client) CurrentBookmark(ctx context.Context, id string) (string, error) {
	var p d1.DatabaseTimeTravelGetBookmarkParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	r, err := c.db.TimeTravel.GetBookmark(ctx, id, p)
	if err != nil {
		return "", classify(err, "get Time Travel bookmark")
	}
	return r.Bookmark, nil
}

// BookmarkAt returns the Time Travel bookmark of the database's state at t (the nearest one at or
// before t). A time outside the retention window is ErrOutsideWindow.
func (c *Client) BookmarkAt(ctx context.Context, id string, t time.Time) (string, error) {
	var p d1.DatabaseTimeTravelGetBookmarkParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.Timestamp.Value, p.Timestamp.Present = t.UTC(), true
	r, err := c.db.TimeTravel.GetBookmark(ctx, id, p)
	if err != nil {
		var apiErr *d1.Error
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusBadRequest {
			return "", fmt.Errorf("get Time Travel bookmark at %s: %w (%s)", t.UTC().Format(time.RFC3339), ErrOutsideWindow, apiMessage(apiErr))
		}
		return "", classify(err, "get Time Travel bookmark")
	}
	return r.Bookmark, nil
}

// TimeTravelRestore is the answer of a Time Travel restore; PreviousBookmark undoes it.
type TimeTravelRestore struct {
	Bookmark, PreviousBookmark, Message string
}

// RestoreBookmark restores a database in place to a bookmark with Time Travel.
func (c *Client) RestoreBookmark(ctx context.Context, id, bookmark string) (TimeTravelRestore, error) {
	if bookmark == "" {
		return TimeTravelRestore{}, errors.New("time travel restore: empty bookmark")
	}
	var p d1.DatabaseTimeTravelRestoreParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.Bookmark.Value, p.Bookmark.Present = bookmark, true
	r, err := c.db.TimeTravel.Restore(ctx, id, p)
	if err != nil {
		return TimeTravelRestore{}, classify(err, "Time Travel restore")
	}
	return TimeTravelRestore{Bookmark: r.Bookmark, PreviousBookmark: r.PreviousBookmark, Message: r.Message}, nil
}
