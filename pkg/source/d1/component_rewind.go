package d1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// RewindPlanJSON is restore --time-travel --dry-run --json's "plan".
type RewindPlanJSON struct {
	Database string    `json:"database"`
	UUID     string    `json:"uuid"`
	At       time.Time `json:"at"`
	Bookmark string    `json:"bookmark"`
	Method   string    `json:"method"` // "time-travel"
}

// RewindSummary is restore --time-travel --json's summary.
type RewindSummary struct {
	MessageType      string    `json:"message_type"` // "summary"
	Database         string    `json:"database"`
	UUID             string    `json:"uuid"`
	At               time.Time `json:"at"`
	Bookmark         string    `json:"bookmark"`
	PreviousBookmark string    `json:"previous_bookmark"`
	Undo             string    `json:"undo"`
	SafetySnapshot   string    `json:"safety_snapshot,omitempty"`
}

// planRewind plans restoring the live database in place to its state at --at with D1's Time Travel:
// no snapshot is read; the safety snapshot backs up the database first.
func (c *component) planRewind(ctx context.Context, env source.Env, req source.RestoreRequest) (source.RestorePlan, error) {
	f := c.restore
	if err := f.checkRewind(req.At != nil); err != nil {
		return nil, err
	}
	cf, err := env.Cloudflare()
	if err != nil {
		return nil, err
	}
	db, err := cf.ResolveDatabase(ctx, f.database)
	if err != nil {
		return nil, err
	}
	at := req.At.UTC()
	bm, err := cf.BookmarkAt(ctx, db.UUID, at)
	if err != nil {
		if errors.Is(err, cloudflare.ErrOutsideWindow) {
			return nil, fmt.Errorf("%w; restore from the archive instead (drop --time-travel): cfbackup restore --at %q --d1-database %s --in-place --yes", err, at.Format(time.RFC3339), db.Name)
		}
		return nil, err
	}
	return &rewindPlan{api: cf, db: db, at: at, bookmark: bm}, nil
}

// checkRewind insists on --at, --in-place and --d1-database, and no other target.
func (f restoreFlags) checkRewind(haveAt bool) error {
	switch {
	case !haveAt:
		return usage("--time-travel needs --at TIME (and --in-place)")
	case !f.inPlace || f.toFile != "" || f.toDatabase != "":
		return usage("--time-travel restores the database itself: use it with --in-place (and --yes)")
	case f.database == "":
		return usage("--time-travel needs --d1-database NAME (the live database to rewind)")
	}
	return nil
}

// rewindPlan rewinds a live database with Time Travel.
type rewindPlan struct {
	api      API
	db       cloudflare.Database
	at       time.Time
	bookmark string
}

func (p *rewindPlan) Text(w io.Writer) {
	fmt.Fprintf(w, "Would rewind D1 database %s (%s) in place with Time Travel to bookmark %s (its state at %s).\n", p.db.Name, p.db.UUID, p.bookmark, p.at.Format(time.RFC3339))
}

func (p *rewindPlan) JSON() any {
	return RewindPlanJSON{Database: p.db.Name, UUID: p.db.UUID, At: p.at, Bookmark: p.bookmark, Method: "time-travel"}
}

func (p *rewindPlan) Confirm() *source.Confirmation { return confirmation(p.db.Name) }

func (p *rewindPlan) Safety() *source.Safety {
	return &source.Safety{
		Target:    p.db.Name,
		What:      "the contents of D1 database " + p.db.Name,
		Captures:  []source.Capture{liveCapture(p.api, p.db.Name, func(context.Context) (cloudflare.Database, error) { return p.db, nil })},
		Restoring: "time-travel:" + p.bookmark,
	}
}

func (p *rewindPlan) Execute(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	res, err := p.api.RestoreBookmark(ctx, p.db.UUID, p.bookmark)
	if err != nil {
		return nil, fmt.Errorf("Time Travel restore of %s: %w (the database was not changed unless the API says otherwise; check with: wrangler d1 time-travel info %s)", p.db.Name, err, p.db.Name)
	}
	undo := fmt.Sprintf("wrangler d1 time-travel restore %s --bookmark=%s", p.db.Name, res.PreviousBookmark)
	text := fmt.Sprintf("Rewound D1 database %s to its state at %s (bookmark %s).\nTo undo: %s\n", p.db.Name, p.at.Format(time.RFC3339), res.Bookmark, undo)
	if x.SafetySnapshot != "" {
		text += fmt.Sprintf("Safety snapshot of the data before the restore: %s\n", x.SafetySnapshot)
	}
	return &source.RestoreResult{
		JSON: RewindSummary{MessageType: "summary", Database: p.db.Name, UUID: p.db.UUID, At: p.at, Bookmark: res.Bookmark,
			PreviousBookmark: res.PreviousBookmark, Undo: undo, SafetySnapshot: x.SafetySnapshot},
		Text: text,
	}, nil
}

// Overwrites names the live database a rewind replaces (source.Overwriter).
func (p *rewindPlan) Overwrites() *source.Overwrite {
	return &source.Overwrite{Sources: []string{p.db.Name}, Targets: []string{p.db.Name}}
}
