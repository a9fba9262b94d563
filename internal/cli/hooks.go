package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/metrics"
	"github.com/cfbackup/cfbackup/pkg/notify"
	"github.com/cfbackup/cfbackup/pkg/repo"
)

// Hooks around every command (docs/AUDIT.md, docs/NOTIFICATIONS.md):
//   - a command annotated mutating (Annotations["mutating"] == "true") appends an audit record
//     "started" before it runs and "ok"/"error" after, success or failure, interrupted or not;
//   - the commands in reportedCommands send notifications and write metrics after they run.
//
// Neither hook ever changes the command's exit code: a failure to record, notify or export is logged
// (and notification failures are counted in the metrics).

// annotationMutating marks a command that changes the repository or the account.
const annotationMutating = "mutating"

// mutating marks cmd as changing the repository or the account (so it is audited).
func mutating(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotationMutating] = "true"
	return cmd
}

// annotationReads marks a command that reads stored data without changing what an auditor would
// see (verify --read-data, test-restore, report) or besides changing it (restore, copy): its value is
// what it reads (audit.ReadsData, ReadsCiphertext, ReadsMetadata), optionally followed by
// ":flag,flag" when it reads that only with one of those flags set (verify).
const annotationReads = "reads"

// reads marks cmd as reading stored data (see annotationReads), so its run is audited.
func reads(cmd *cobra.Command, what string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotationReads] = what
	return cmd
}

// readsOf is what the run reads ("" when it reads nothing the audit trail records).
func readsOf(cmd *cobra.Command) string {
	if cmd == nil || flagTrue(cmd, "dry-run") {
		return ""
	}
	what, flags, conditional := strings.Cut(cmd.Annotations[annotationReads], ":")
	if !conditional {
		return what
	}
	for _, name := range strings.Split(flags, ",") {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return what
		}
	}
	return ""
}

// reportedCommands notify and export metrics after they run (keyed by command path).
var reportedCommands = []string{"backup", "verify", "test-restore", "prune", "restore", "copy"}

// hookTimeout bounds the work hooks do after a command, even an interrupted one.
const hookTimeout = 30 * time.Second

// runState is what the hooks remember between before and after the command.
type runState struct {
	start   time.Time
	id      string
	command string
	started bool // a "started" audit record was written
	log     *audit.Log
}

func commandName(cmd *cobra.Command) string {
	p := cmd.CommandPath()
	if i := strings.IndexByte(p, ' '); i >= 0 {
		return p[i+1:]
	}
	return p
}

func isMutating(cmd *cobra.Command) bool {
	return cmd != nil && cmd.Annotations[annotationMutating] == "true" && !flagTrue(cmd, "dry-run")
}

func isReported(cmd *cobra.Command) bool {
	return cmd != nil && slices.Contains(reportedCommands, commandName(cmd)) && !flagTrue(cmd, "dry-run")
}

func flagTrue(cmd *cobra.Command, name string) bool {
	fl := cmd.Flags().Lookup(name)
	return fl != nil && fl.Value.String() == "true"
}

// addHookFlags gives the reported commands their notification and metrics flags.
func addHookFlags(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if slices.Contains(reportedCommands, commandName(c)) {
			for _, fl := range [][2]string{
				{"notify-on", "notify on failure (default), success (and failure) or always; webhook and SMTP settings come from env/config (docs/NOTIFICATIONS.md; env CFBACKUP_NOTIFY_ON)"},
				{"metrics-textfile", "write Prometheus metrics to this node_exporter textfile (env CFBACKUP_METRICS_TEXTFILE)"},
				{"metrics-push", "push Prometheus metrics to this Pushgateway URL (env CFBACKUP_METRICS_PUSH)"},
			} {
				if c.Flags().Lookup(fl[0]) == nil {
					c.Flags().String(fl[0], "", fl[1])
				}
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// beforeRun runs after the configuration is loaded and before the command: it checks the
// notification settings of reported commands and writes the "started" audit record.
func (f *Factory) beforeRun(cmd *cobra.Command) error {
	f.run = runState{start: time.Now(), id: newRunID(), command: commandName(cmd)}
	if isReported(cmd) {
		if err := f.validateHooks(); err != nil {
			return usageError{err}
		}
	}
	if !isMutating(cmd) || f.run.command == "init" {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), hookTimeout)
	defer cancel()
	l, err := f.auditLog(ctx)
	if err != nil || l == nil {
		return nil
	}
	rec := f.auditRecord(cmd, audit.ResultStarted, nil, ExitOK)
	if err := l.Append(ctx, rec); err != nil {
		f.Log().Warn("could not write the audit record for the start of this run", "command", f.run.command, "err", err)
		return nil
	}
	f.run.started = true
	return nil
}

func (f *Factory) validateHooks() error {
	c := f.cfg
	if err := notify.ValidateOn(c.NotifyOn); err != nil {
		return err
	}
	if c.SMTPHost != "" {
		if err := f.smtp().Validate(); err != nil {
			return err
		}
	}
	return nil
}

// auditLog opens the audit trail of the configured repository; nil when there is no repository there.
func (f *Factory) auditLog(ctx context.Context) (*audit.Log, error) {
	if f.run.log != nil {
		return f.run.log, nil
	}
	r, err := f.Repo(ctx)
	if errors.Is(err, repo.ErrNotRepo) {
		f.Log().Debug("no repository to write the audit record into", "err", err)
		return nil, nil
	}
	if err != nil {
		f.Log().Warn("could not open the repository to write the audit record", "err", err)
		return nil, err
	}
	f.run.log = &audit.Log{Store: r.Store}
	return f.run.log, nil
}

func (f *Factory) auditRecord(cmd *cobra.Command, result string, err error, code int) *audit.Record {
	rec := &audit.Record{
		Actor:      audit.Actor(f.Getenv),
		Host:       audit.Host(),
		Command:    f.run.command,
		Args:       argShape(cmd),
		Result:     result,
		ExitCode:   code,
		Run:        f.run.id,
		Components: flagComponents(cmd),
		Reads:      readsOf(cmd),
	}
	if err != nil {
		rec.Error = errorClass(err, code)
	}
	if r := f.result; r != nil && result != audit.ResultStarted {
		rec.Snapshots = r.Snapshots
		rec.Bytes = r.Bytes
		if len(r.Components) > 0 {
			rec.Components = r.Components
		}
		if r.Wrote {
			rec.Items, rec.StoredBytes = r.Items, r.StoredBytes
			rec.PerComponent = map[string]audit.Count{}
			for c, v := range r.PerComponent {
				rec.PerComponent[c] = audit.Count{Items: v.Items, Bytes: v.Bytes}
			}
		}
	}
	return rec
}

// flagComponents reads a command's --component flag, if it has one.
func flagComponents(cmd *cobra.Command) []string {
	fl := cmd.Flags().Lookup("component")
	if fl == nil {
		return nil
	}
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	if v := fl.Value.String(); v != "" {
		return []string{v}
	}
	return nil
}

// afterRun runs once the command has ended, successfully or not: audit record, notifications, metrics.
func (f *Factory) afterRun(ctx context.Context, cmd *cobra.Command, err error, code int) {
	if f.cfg == nil || cmd == nil || f.run.start.IsZero() {
		return // the configuration never loaded (a usage error before the command ran)
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookTimeout)
	defer cancel()
	res := RunResult{}
	if f.result != nil {
		res = *f.result
	}
	res.Command = f.run.command
	res.Duration = time.Since(f.run.start)
	res.Err = err
	res.ExitCode = code
	if len(res.Components) == 0 {
		res.Components = flagComponents(cmd)
	}
	// A run that only reads writes one record, at its end: reading leaves nothing half done.
	if isMutating(cmd) || readsOf(cmd) != "" {
		f.auditEnd(hctx, cmd, err, code)
	}
	if isReported(cmd) {
		failures := f.notify(hctx, res)
		f.exportMetrics(hctx, res, failures)
	}
}

func (f *Factory) auditEnd(ctx context.Context, cmd *cobra.Command, err error, code int) {
	l, oerr := f.auditLog(ctx)
	if oerr != nil || l == nil {
		return
	}
	result := audit.ResultOK
	if err != nil {
		result = audit.ResultError
	}
	if aerr := l.Append(ctx, f.auditRecord(cmd, result, err, code)); aerr != nil {
		f.Log().Warn("could not write the audit record of this run", "command", f.run.command, "err", aerr)
	}
}

func (f *Factory) smtp() notify.SMTP {
	c := f.cfg
	var to []string
	for _, a := range strings.Split(c.SMTPTo, ",") {
		if a = strings.TrimSpace(a); a != "" {
			to = append(to, a)
		}
	}
	return notify.SMTP{Host: c.SMTPHost, Port: c.SMTPPort, Username: c.SMTPUsername, Password: c.SMTPPassword, From: c.SMTPFrom, To: to}
}

// notify sends the run's notifications; it returns how many could not be delivered.
func (f *Factory) notify(ctx context.Context, res RunResult) int {
	c := f.cfg
	if !notify.Wanted(c.NotifyOn, res.Err != nil) {
		return 0
	}
	var ns []notify.Notifier
	if c.NotifyWebhook != "" {
		ns = append(ns, notify.Webhook{URL: c.NotifyWebhook})
	}
	if c.SMTPHost != "" {
		ns = append(ns, f.smtp())
	}
	if len(ns) == 0 {
		return 0
	}
	ev := notify.Event{Command: res.Command, Status: "success", ExitCode: res.ExitCode, Host: audit.Host(), Actor: audit.Actor(f.Getenv),
		Time: time.Now().UTC(), Duration: res.Duration, Components: res.Components, Snapshots: res.Snapshots, Bytes: res.Bytes, Items: res.Items}
	if res.Err != nil {
		ev.Status, ev.Error = "failure", audit.RedactText(res.Err.Error())
	}
	if st, err := f.Store(ctx); err == nil {
		ev.Repository = st.Location()
	}
	errs := notify.Send(ctx, ev, ns)
	for _, err := range errs {
		f.Log().Warn("notification failed (the run's result is unchanged)", "err", audit.RedactText(err.Error()))
	}
	return len(errs)
}

func (f *Factory) exportMetrics(ctx context.Context, res RunResult, notifyFailures int) {
	c := f.cfg
	if c.MetricsTextfile == "" && c.MetricsPush == "" {
		return
	}
	run := metrics.Run{Command: res.Command, Components: res.Components, Success: res.Err == nil, End: time.Now(), Duration: res.Duration,
		NotifyFailures: notifyFailures, PerComponent: map[string]metrics.Stats{}}
	for k, v := range res.PerComponent {
		run.PerComponent[k] = metrics.Stats{Bytes: v.Bytes, Items: v.Items}
	}
	if len(res.PerComponent) == 0 && len(res.Components) == 1 {
		run.PerComponent[res.Components[0]] = metrics.Stats{Bytes: res.Bytes, Items: res.Items}
	}
	if len(res.Components) == 0 {
		run.PerComponent[metrics.AllComponents] = metrics.Stats{Bytes: res.Bytes, Items: res.Items}
	}
	if c.MetricsTextfile != "" {
		if err := metrics.WriteTextfile(c.MetricsTextfile, run); err != nil {
			f.Log().Warn("could not write the metrics textfile", "err", audit.RedactText(err.Error()))
		}
	}
	if c.MetricsPush != "" {
		if err := metrics.Push(ctx, c.MetricsPush, audit.Host(), run, nil); err != nil {
			f.Log().Warn("could not push metrics", "err", audit.RedactText(err.Error()))
		}
	}
}

// shownFlags are the string flags whose values the audit trail keeps (after audit.RedactValue):
// components, formats, times, policies, labels, hold reasons and the repository location. Every
// other string flag — tables, databases, buckets, prefixes, object ids, files, directories, URLs — is
// recorded by name only, with "[value]" or "[N values]": the trail is plaintext and never holds
// item, table or object names (docs/AUDIT.md).
var shownFlags = map[string]bool{
	"component": true, "format": true, "at": true, "since": true, "until": true, "grace": true, "keep-within": true,
	"require-within": true, "read-data-subset": true, "sample": true, "log-level": true, "notify-on": true,
	"object-lock-mode": true, "object-lock-retention": true, "overwrite": true, "label": true, "keep-label": true,
	"reason": true, "case": true, "repo": true, "storage-class": true, "tier": true, "older-than": true, "break-glass": true,
}

// shownTypes are flag value types that carry no names: switches, counts, sizes and durations.
var shownTypes = map[string]bool{
	"bool": true, "int": true, "int8": true, "int16": true, "int32": true, "int64": true, "uint": true, "uint8": true,
	"uint16": true, "uint32": true, "uint64": true, "float32": true, "float64": true, "count": true, "duration": true,
}

// snapshotArg matches a positional argument that is a snapshot reference (an id, a prefix of one, or
// latest): operational metadata, kept. Other positional arguments are recorded as "[arg]".
var snapshotArg = regexp.MustCompile(`^(latest|[0-9a-f]{4,64})$`)

// argShape is the command line as the audit trail records it: the command path, positional snapshot
// references, then every flag given, sorted, with its value only when shownFlags or shownTypes allow.
func argShape(cmd *cobra.Command) []string {
	out := strings.Fields(commandName(cmd))
	for _, a := range cmd.Flags().Args() {
		if snapshotArg.MatchString(a) {
			out = append(out, a)
		} else {
			out = append(out, "[arg]")
		}
	}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		name := "--" + fl.Name
		typ := fl.Value.Type()
		sv, isSlice := fl.Value.(pflag.SliceValue)
		switch {
		case typ == "bool" && fl.Value.String() == "true":
			out = append(out, name)
		case shownTypes[typ]:
			out = append(out, name+"="+fl.Value.String())
		case shownFlags[fl.Name] && isSlice:
			for _, v := range sv.GetSlice() {
				out = append(out, name+"="+audit.RedactValue(v))
			}
		case shownFlags[fl.Name]:
			out = append(out, name+"="+audit.RedactValue(fl.Value.String()))
		case isSlice && len(sv.GetSlice()) == 1:
			out = append(out, name+"=[1 value]")
		case isSlice:
			out = append(out, fmt.Sprintf("%s=[%d values]", name, len(sv.GetSlice())))
		default:
			out = append(out, name+"=[value]")
		}
	})
	return out
}
