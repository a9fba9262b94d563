// Package source is the component registry. Every kind of data cfbackup backs up — D1 databases,
// Durable Objects, R2 buckets, the Workers configuration, Workers KV — implements Component in its own
// package and registers itself once (Register, from an init function). The engine runs backups,
// restores and test-restores through this interface, and the CLI binds each component's flags and
// prints its plans without knowing which components exist: adding a component touches its own package
// and one import line (internal/cli/components.go). docs/COMPONENTS.md is the how-to.
package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
)

// Verb is a command a component takes part in; components bind flags per verb.
type Verb string

// The verbs a component serves.
const (
	VerbBackup      Verb = "backup"
	VerbRestore     Verb = "restore"
	VerbTestRestore Verb = "test-restore"
)

// Component is one kind of data cfbackup backs up. A value holds the flags of one command run: New
// makes a fresh one per command, Flags binds them, and the Plan methods read them.
type Component interface {
	// Name is the --component value and the manifest's component name ("d1", "kv").
	Name() string
	// Title names one source of the component for people ("D1 database", "KV namespace").
	Title() string
	// Flags binds the component's own flags for verb. Flags shared by every component (--dry-run,
	// --yes, --to-dir, --prefix, --no-safety-snapshot) are bound by the CLI and arrive in the requests.
	Flags(verb Verb, fs *pflag.FlagSet)
	// PlanBackup resolves what a backup captures. It reads the account and writes nothing.
	PlanBackup(ctx context.Context, env Env, req BackupRequest) (*BackupPlan, error)
	// PlanRestore decides what restoring req.Snapshot does. It reads the snapshot and the target and
	// writes nothing; the engine confirms, takes the safety snapshot and then calls Execute.
	PlanRestore(ctx context.Context, env Env, req RestoreRequest) (RestorePlan, error)
	// TestRestore restores the snapshot's sources of this component into scratch targets and checks
	// them; it never writes to the account.
	TestRestore(ctx context.Context, env Env, req TestRestoreRequest) ([]TestRestoreCheck, error)
}

// Env is what a component may ask of the host that runs it. The CLI implements it from its
// configuration; tests implement it directly. Every accessor is lazy: a dry run or a restore to a
// file never needs a Cloudflare token.
type Env interface {
	// Cloudflare is the account's REST API client (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID).
	Cloudflare() (*cloudflare.Client, error)
	// Setting is a configuration value by its config-file key ("r2_endpoint", "worker_url"), after
	// environment and flags; secrets ("r2_secret_access_key", "worker_secret") are read the same way and
	// must never be printed or logged.
	Setting(key string) string
	// Log is the run's logger; Stderr takes notes for the operator (warnings, undo commands).
	Log() *slog.Logger
	Stderr() io.Writer
	// Interactive reports whether a person can answer a prompt (stdin and stderr are terminals).
	Interactive() bool
}

// Progress receives byte counts of long-running work; the CLI shows it as a bar on a terminal.
type Progress interface {
	Start(label string, total int64)
	Add(n int)
	Finish()
}

// NoProgress discards progress.
type NoProgress struct{}

// Start does nothing.
func (NoProgress) Start(string, int64) {}

// Add does nothing.
func (NoProgress) Add(int) {}

// Finish does nothing.
func (NoProgress) Finish() {}

// Opener reads one item of a snapshot back, checking it against its recorded hash as it is read.
type Opener func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error)

// BackupRequest is what a backup asks of each component.
type BackupRequest struct {
	// Repo is the repository the snapshot goes to (read-only use: parents, sizes of upload buffers).
	Repo *repo.Repo
	// WriterSecret keys incremental indexes; nil when this host has none (SecretErr says why).
	WriterSecret []byte
	SecretErr    error
	DryRun       bool
}

// BackupPlan is what a backup would do (returned for --dry-run and before a real run): one Capture
// per source, and what --dry-run shows.
type BackupPlan struct {
	Components []string `json:"components"`
	// Details holds each component's plan for --dry-run --json, keyed by component.
	Details map[string]any `json:"details,omitempty"`
	// Databases is D1's plan (kept at the top level of backup --dry-run --json).
	Databases []cloudflare.Database `json:"databases,omitempty"`

	captures []Capture
	texts    []func(w io.Writer)
}

// Capture backs up one source (a database, a bucket, a namespace) into the snapshot being written.
type Capture struct {
	Component string
	Name      string
	Run       func(ctx context.Context, s *Session) error
}

// AddCapture appends a source to the plan; captures run in the order they were added.
func (p *BackupPlan) AddCapture(c Capture) { p.captures = append(p.captures, c) }

// Captures lists the plan's sources.
func (p *BackupPlan) Captures() []Capture { return p.captures }

// SetDetails records a component's --dry-run plan (JSON) and how to print it (text).
func (p *BackupPlan) SetDetails(component string, details any, text func(w io.Writer)) {
	if p.Details == nil {
		p.Details = map[string]any{}
	}
	p.Details[component] = details
	if text != nil {
		p.texts = append(p.texts, text)
	}
}

// Merge appends another component's plan.
func (p *BackupPlan) Merge(q *BackupPlan) {
	if q == nil {
		return
	}
	p.captures = append(p.captures, q.captures...)
	p.texts = append(p.texts, q.texts...)
	p.Databases = append(p.Databases, q.Databases...)
	for k, v := range q.Details {
		if p.Details == nil {
			p.Details = map[string]any{}
		}
		p.Details[k] = v
	}
}

// PrintText writes the plan as --dry-run shows it.
func (p *BackupPlan) PrintText(w io.Writer) {
	for _, t := range p.texts {
		t(w)
	}
}

// RestoreRequest is what the engine hands a component's PlanRestore.
type RestoreRequest struct {
	// Snapshot is the resolved snapshot (it holds the component); Catalogue its decrypted item list.
	Snapshot  *manifest.Manifest
	Catalogue *manifest.Catalogue
	// Open reads items back, verified.
	Open       Opener
	Identities []age.Identity
	Repo       *repo.Repo
	// Shared flags.
	Prefix   string // restore only keys under this prefix (r2, kv)
	ToDir    string // write into this local directory instead of the account
	Yes      bool   // confirmed on the command line
	DryRun   bool
	NoSafety bool // --no-safety-snapshot
	// At is the point in time (--at, its last instant) for a component that Rewinds; nil otherwise.
	At *time.Time
}

// Rewinder is a component whose restore may come from the account's own history instead of a
// snapshot (D1 Time Travel). When Rewinds reports true for the bound flags, the engine resolves no
// snapshot and needs no identity: PlanRestore gets RestoreRequest.At, and Snapshot is nil.
type Rewinder interface {
	Rewinds() bool
}

// RestorePlan is a component's decided restore: what --dry-run shows, what needs confirming, what
// the safety snapshot must capture, and how to carry it out.
type RestorePlan interface {
	// Text writes the plan as --dry-run prints it; JSON is the plan as --dry-run --json returns it.
	Text(w io.Writer)
	JSON() any
	// Confirm is what the operator must confirm (live data overwritten), or nil.
	Confirm() *Confirmation
	// Safety is what must be backed up before Execute overwrites live data, or nil when nothing live
	// is overwritten or the target is not the account.
	Safety() *Safety
	// Execute performs the restore. The engine adds the safety snapshot's undo command to a failure;
	// the component says in its error how far it got (what is partly written). A result returned with
	// an error is still shown (config --diff: the differences, and exit status 9).
	Execute(ctx context.Context, x Execution) (*RestoreResult, error)
}

// Overwriter is implemented by a RestorePlan that can say which live sources of the account it
// writes into, so the CLI can hold restores into protected targets for two-person approval
// (docs/APPROVAL.md). Overwrites is nil when the plan writes nothing in the account (a file, a
// directory).
type Overwriter interface {
	Overwrites() *Overwrite
}

// Overwrite is what a restore writes into the account: names of sources and counts only (it is
// stored in plaintext in the approval plan; never table, object or key names).
type Overwrite struct {
	// Sources are the snapshot's source names read; Targets the live ones written, by name.
	Sources []string
	Targets []string
	// Items and Bytes are written; Live counts the live items replaced (0: not known in advance).
	Items int64
	Bytes int64
	Live  int64
}

// DryRunChecker is implemented by a RestorePlan whose dry run has an outcome of its own: config
// --diff compares with the live account (which writes nothing) and fails with errclass.Differs when
// they differ. The CLI returns DryRunErr after showing the plan.
type DryRunChecker interface {
	DryRunErr() error
}

// Execution is what the engine hands Execute: progress, and the safety snapshot taken (if any) with
// the command that undoes the restore from it, for the component's summary.
type Execution struct {
	Progress       Progress
	SafetySnapshot string
	Undo           string
}

// Confirmation is one overwrite of live data that needs --yes, or its name typed on a terminal.
type Confirmation struct {
	// Prompt says what will be replaced ("the contents of the live D1 database \"app\"").
	Prompt string
	// Name must be typed to confirm on a terminal.
	Name string
}

// Safety says what a safety snapshot takes before a restore overwrites live data.
type Safety struct {
	// Target names what is overwritten, in the label pre-restore=<component>:<target>.
	Target string
	// What describes it for messages ("the 3 object(s) of bucket assets this restore overwrites").
	What string
	// Captures back up exactly the live data about to be overwritten.
	Captures []Capture
	// Undo is the command that restores the safety snapshot id.
	Undo func(id string) string
	// Restoring is what the restore puts back, for the label restoring= (default: the snapshot's id).
	Restoring string
}

// RestoreResult is a finished restore: its --json summary (a typed struct whose fields include
// message_type "summary") and the lines a person reads.
type RestoreResult struct {
	JSON any
	Text string
}

// TestRestoreRequest is what test-restore hands each component.
type TestRestoreRequest struct {
	Snapshot   *manifest.Manifest
	Catalogue  *manifest.Catalogue
	Open       Opener
	Identities []age.Identity
	// Scratch is a directory the component may fill (removed afterwards unless kept).
	Scratch string
	// Sample limits per-object components to N items or x percent ("" = all); Seed seeds the
	// random choice of them (SampleSource): the same seed picks the same items of the same snapshot.
	Sample string
	Seed   uint64
	// Assertions are the user's checks of restored databases (D1).
	Assertions []Assertion
	// ScratchWorkerURL is a local Workers runtime of the application that sampled Durable Objects may
	// be imported into (never production); ScratchWorkerSecret signs those requests.
	ScratchWorkerURL    string
	ScratchWorkerSecret string
	// Diff asks for a comparison with the live account where the component has one (config): the
	// differences are reported in LiveChanges, not as failures.
	Diff bool
	// Log is the run's logger.
	Log *slog.Logger
}

// Assertion is a user check run against a D1 database restored by test-restore: SQL whose first
// column of the first row is compared with Expect ("> 0", ">= 1000", "= ok", "!= 0"). An empty Expect
// asks for a truthy value (a row whose first column is not 0, NULL or empty).
type Assertion struct {
	Database string `json:"database,omitempty"` // name or id; empty: every database
	SQL      string `json:"sql"`
	Expect   string `json:"expect,omitempty"`
}

// TestRestoreCheck is one source's test-restore outcome.
type TestRestoreCheck struct {
	Component string   `json:"component"`
	Source    string   `json:"source"`
	Items     int      `json:"items"`
	Bytes     int64    `json:"bytes"`
	Checks    []string `json:"checks"`
	Problems  []string `json:"problems"`
	// ProblemKinds says what each problem is, index by index: integrity, restore, assertion, error or
	// unsupported.
	ProblemKinds []string `json:"problem_kinds"`
	// LiveChanges are the differences from the live account (config with --diff).
	LiveChanges any `json:"live_changes,omitempty"`
}

// Failure kinds say what a failed check of verify or test-restore means; verify/ records carry them
// (failure_kind, failures) so an auditor can tell damage from an unmet assertion or an unsupported
// component. docs/FORMAT.md ("verify/ records") lists them.
const (
	// FailureIntegrity: stored data is missing or differs from what the snapshot recorded.
	FailureIntegrity = "integrity"
	// FailureRestore: the data was intact but did not restore into the scratch target, or the
	// restored copy failed its checks there.
	FailureRestore = "restore"
	// FailureAssertion: the data restored, and a user assertion about it did not hold.
	FailureAssertion = "assertion"
	// FailureError: the check itself could not run: no evidence either way.
	FailureError = "error"
	// FailureUnsupported: this build cannot check the component: nothing was proven, nothing found.
	FailureUnsupported = "unsupported"
)

// FailureKinds lists the kinds, most serious first: a record's failure_kind is the first one of its
// failures.
var FailureKinds = []string{FailureIntegrity, FailureRestore, FailureAssertion, FailureError, FailureUnsupported}

// Fail records one problem of a test-restore source and what kind of failure it is.
func (c *TestRestoreCheck) Fail(kind, problem string) {
	c.Problems = append(c.Problems, problem)
	c.ProblemKinds = append(c.ProblemKinds, kind)
}

// Kind is the failure kind of problem i (FailureError for a problem appended without one).
func (c *TestRestoreCheck) Kind(i int) string {
	if i < len(c.ProblemKinds) && c.ProblemKinds[i] != "" {
		return c.ProblemKinds[i]
	}
	return FailureError
}

var (
	mu       sync.Mutex
	registry = map[string]func() Component{}
)

// Register makes a component available under its name; call it once, from the component package's
// init. Registering a name twice panics (a build error, not a runtime one).
func Register(newComponent func() Component) {
	name := newComponent().Name()
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("source: component registered twice: " + name)
	}
	registry[name] = newComponent
}

// Names lists the registered components in a stable order (the order of a full backup).
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		return order(out[i]) < order(out[j]) || order(out[i]) == order(out[j]) && out[i] < out[j]
	})
	return out
}

// order keeps the historical order of the first components (d1, do, r2, config); later ones follow
// alphabetically.
func order(name string) int {
	switch name {
	case "d1":
		return 0
	case "do":
		return 1
	case "r2":
		return 2
	case "config":
		return 3
	}
	return 4
}

// New makes a fresh component value (its own flags) by name.
func New(name string) (Component, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, ErrUnknown(name)
	}
	return f(), nil
}

// Registered reports whether name is a registered component.
func Registered(name string) bool {
	mu.Lock()
	defer mu.Unlock()
	_, ok := registry[name]
	return ok
}

// ErrUnknown is the error for a --component value that names no component.
func ErrUnknown(name string) error {
	return fmt.Errorf("%w: unknown component %q (components: %s)", errclass.Usage, name, strings.Join(Names(), ", "))
}

// Validate checks --component values.
func Validate(names []string) error {
	for _, n := range names {
		if !Registered(n) {
			return ErrUnknown(n)
		}
	}
	return nil
}

// FlagChecker is implemented by a component whose flags can be checked before anything is read, so
// that a usage error comes first whatever the repository holds. fs is the command's whole flag set
// (shared flags and other components' included); CheckFlags may read files the flags name.
type FlagChecker interface {
	CheckFlags(verb Verb, fs *pflag.FlagSet) error
}
