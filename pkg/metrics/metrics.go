// Package metrics exports the outcome of a cfbackup run as Prometheus metrics, either into a
// node_exporter textfile-collector file (written atomically, merged with what other commands wrote
// there before) or pushed to a Pushgateway, so a missed or failing backup raises an alert.
//
// Every series carries the labels command (backup, verify, prune, test-restore, restore, copy) and component (d1,
// do, r2, config, or "all" when a run has none):
//
//	cfbackup_last_run_timestamp_seconds      end of the last run
//	cfbackup_last_run_success                1 if it succeeded, 0 if not
//	cfbackup_last_success_timestamp_seconds  end of the last successful run (kept across failed runs)
//	cfbackup_last_run_duration_seconds       how long the last run took
//	cfbackup_last_run_bytes                  bytes it handled (backup: uncompressed size captured)
//	cfbackup_last_run_items                  items it handled
//	cfbackup_failures_total                  failed runs so far (textfile: carried from the old file)
//	cfbackup_notification_failures           notifications of the last run that could not be delivered (label command only)
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// AllComponents is the component label of a run that concerns no particular component.
const AllComponents = "all"

// Stats are one component's figures in a run.
type Stats struct {
	Bytes int64
	Items int64
}

// Run is one run's outcome.
type Run struct {
	Command string
	// Components the run concerned; PerComponent has their figures (missing ones count as zero).
	Components   []string
	PerComponent map[string]Stats
	Success      bool
	End          time.Time
	Duration     time.Duration
	// NotifyFailures counts notifications of this run that could not be delivered.
	NotifyFailures int
}

func (r Run) components() []string {
	if len(r.Components) == 0 {
		return []string{AllComponents}
	}
	return r.Components
}

// collect builds a registry holding the run's series. withCommand adds the command label (the textfile);
// a push carries it in the grouping key instead, where Pushgateway forbids it as a metric label.
// failuresBefore gives cfbackup_failures_total's previous value per component.
func collect(r Run, withCommand bool, failuresBefore map[string]float64) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	labels := []string{"component"}
	if withCommand {
		labels = []string{"command", "component"}
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	lastRun := gauge("cfbackup_last_run_timestamp_seconds", "Unix time the last cfbackup run of this command ended.")
	success := gauge("cfbackup_last_run_success", "1 if the last run succeeded, 0 if it failed.")
	duration := gauge("cfbackup_last_run_duration_seconds", "Duration of the last run in seconds.")
	bytes := gauge("cfbackup_last_run_bytes", "Bytes the last run handled for this component.")
	items := gauge("cfbackup_last_run_items", "Items the last run handled for this component.")
	var lastSuccess *prometheus.GaugeVec
	if r.Success {
		lastSuccess = gauge("cfbackup_last_success_timestamp_seconds", "Unix time the last successful run of this command ended.")
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cfbackup_failures_total", Help: "Failed runs of this command."}, labels)
	reg.MustRegister(failures)
	nlabels := []string{}
	if withCommand {
		nlabels = []string{"command"}
	}
	notifyFailures := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cfbackup_notification_failures", Help: "Notifications of the last run that could not be delivered."}, nlabels)
	reg.MustRegister(notifyFailures)

	end := float64(r.End.UnixNano()) / 1e9
	for _, c := range r.components() {
		lv := []string{c}
		if withCommand {
			lv = []string{r.Command, c}
		}
		st := r.PerComponent[c]
		lastRun.WithLabelValues(lv...).Set(end)
		ok := 0.0
		if r.Success {
			ok = 1
			lastSuccess.WithLabelValues(lv...).Set(end)
		}
		success.WithLabelValues(lv...).Set(ok)
		duration.WithLabelValues(lv...).Set(r.Duration.Seconds())
		bytes.WithLabelValues(lv...).Set(float64(st.Bytes))
		items.WithLabelValues(lv...).Set(float64(st.Items))
		f := failures.WithLabelValues(lv...)
		f.Add(failuresBefore[c])
		if !r.Success {
			f.Inc()
		}
	}
	if withCommand {
		notifyFailures.WithLabelValues(r.Command).Set(float64(r.NotifyFailures))
	} else {
		notifyFailures.WithLabelValues().Set(float64(r.NotifyFailures))
	}
	return reg
}

// WriteTextfile writes the run into path for node_exporter's textfile collector. Series other runs
// wrote there (other commands or components) are kept, as is the last success time when this run
// failed; cfbackup_failures_total continues from the old file. The file is replaced atomically
// (temporary file in the same directory, then rename), so the collector never reads half a file.
func WriteTextfile(path string, r Run) error {
	old, err := readTextfile(path)
	if err != nil {
		return err
	}
	before := map[string]float64{}
	if mf := old["cfbackup_failures_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			if label(m, "command") == r.Command {
				before[label(m, "component")] = m.GetCounter().GetValue()
			}
		}
	}
	fams, err := collect(r, true, before).Gather()
	if err != nil {
		return err
	}
	merged := merge(old, fams)
	if err := prometheus.WriteToTextfile(path, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return merged, nil })); err != nil {
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	return nil
}

func readTextfile(path string) (map[string]*dto.MetricFamily, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*dto.MetricFamily{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		return nil, fmt.Errorf("metrics textfile %s is not in the Prometheus text format (%v): move it away or choose another --metrics-textfile", path, err)
	}
	return fams, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func labelKey(m *dto.Metric) string {
	var k string
	for _, l := range m.GetLabel() {
		k += l.GetName() + "\x00" + l.GetValue() + "\x00"
	}
	return k
}

// merge keeps every old series the new families do not replace (same name and label set).
func merge(old map[string]*dto.MetricFamily, fresh []*dto.MetricFamily) []*dto.MetricFamily {
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range fresh {
		byName[mf.GetName()] = mf
	}
	for name, of := range old {
		nf := byName[name]
		if nf == nil {
			byName[name] = of
			continue
		}
		seen := map[string]bool{}
		for _, m := range nf.Metric {
			seen[labelKey(m)] = true
		}
		for _, m := range of.GetMetric() {
			if !seen[labelKey(m)] {
				nf.Metric = append(nf.Metric, m)
			}
		}
		sort.Slice(nf.Metric, func(i, j int) bool { return labelKey(nf.Metric[i]) < labelKey(nf.Metric[j]) })
	}
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// Push sends the run to a Pushgateway at url, grouped by job="cfbackup", command and instance (the
// host), with POST semantics: series of metrics this run does not send — the last success time after
// a failure — stay as they were. cfbackup_failures_total counts this run only (0 or 1); alert on
// cfbackup_last_run_success or on time() - cfbackup_last_success_timestamp_seconds instead.
func Push(ctx context.Context, url, instance string, r Run, client *http.Client) error {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	p := push.New(url, "cfbackup").Grouping("command", r.Command).Client(client).Gatherer(collect(r, false, nil))
	if instance != "" {
		p = p.Grouping("instance", instance)
	}
	if err := p.AddContext(ctx); err != nil {
		return fmt.Errorf("metrics push to %s: %w", url, err)
	}
	return nil
}
