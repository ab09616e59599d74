package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/operators/detect"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/pipeline"
)

func init() {
	register(command{
		name:     "rules",
		summary:  "Check Sigma detection rules, or try them on input files before deploying them.",
		synopsis: "check PATH... | test --rules PATH... (--in FILE... [--import] [--table T] | --hunting DIR [--since 30d]) [--tenant ID]",
		details: "rules check loads every .yml/.yaml rule under the paths and prints each that cannot be\n" +
			"loaded as FILE:LINE: error|unsupported: REASON, then the correlation rules that run, by\n" +
			"type; it exits 1 when a rule is invalid (rules the tables cannot express are listed, not\n" +
			"errors).\n\n" +
			"rules test runs the rules over input files (streaming-API records, Event Hubs envelopes,\n" +
			"export rows of the tables, Windows/Sysmon events in the nested Event.System/EventData\n" +
			"form, the OTRF flat form or the Sentinel SecurityEvent/Event export, Sentinel's AuditLogs\n" +
			"and OfficeActivity rows, and with --import advanced-hunting export rows; JSON lines, JSON\n" +
			"values one after another, or arrays), normalized as the pipeline\n" +
			"normalizes them, and prints one JSON line per match (rule_id, title, the row's table,\n" +
			"tenant and key fields) and per correlation rule that fires (event_count, value_count,\n" +
			"temporal, temporal_ordered, value_sum, value_avg, value_percentile: rule_id, group, first,\n" +
			"last, events, and the sum, average or percentage as metric with the event's value),\n" +
			"then one line per rule with its count. With --hunting it backtests\n" +
			"the rules over the Parquet hunting partitions instead (every tenant, or --tenant's; hours\n" +
			"within --since): what they would have raised over what stitch kept.",
		example: "stitch rules check ../shared/data/sigma/rules\n" +
			"stitch rules test --rules my-rules/ --in events.json\n" +
			"stitch rules test --rules my-rules/ --hunting ./stitch-data/hunting --since 30d",
		run: rulesCmd,
	})
}

func rulesCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: rules needs check or test", errUsage)
	}
	switch args[0] {
	case "check":
		return rulesCheck(args[1:], os.Stdout)
	case "test":
		return rulesTest(ctx, args[1:], os.Stdout, os.Stderr)
	case "-h", "-help", "--help":
		fs := newFlagSet("rules")
		return parseFlags(fs, args)
	}
	return fmt.Errorf("%w: rules %q: want check or test", errUsage, args[0])
}

// rulesCheck lints rules: problems on w, an error when any rule is invalid.
func rulesCheck(args []string, w io.Writer) error {
	fs := newFlagSet("rules")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: rules check needs at least one path", errUsage)
	}
	set, err := detect.Load(fs.Args()...)
	if err != nil {
		return err
	}
	_, cprobs := set.NewCorrelator(set.NewEvaluator())
	set.Problems = append(set.Problems, cprobs...)
	for _, p := range set.Problems {
		fmt.Fprintln(w, p)
	}
	errs := len(set.Errors())
	fmt.Fprintf(w, "%s and %s loaded, %d invalid, %d unsupported\n", english.Count(len(set.Rules), "rule"), english.Count(len(set.Correlations), "correlation rule"), errs, len(set.Problems)-errs)
	if len(set.Correlations) > 0 {
		fmt.Fprintf(w, "supported correlation rules: %s\n", correlationTypes(set.Correlations))
	}
	if errs > 0 {
		return fmt.Errorf("%s", english.Count(errs, "invalid rule"))
	}
	return nil
}

// correlationTypes counts correlation rules by type: "event_count 2,
// value_sum 1".
func correlationTypes(cs []*detect.Correlation) string {
	n := map[string]int{}
	for _, c := range cs {
		n[c.Type]++
	}
	types := make([]string, 0, len(n))
	for t := range n {
		types = append(types, t)
	}
	sort.Strings(types)
	for i, t := range types {
		types[i] = fmt.Sprintf("%s %d", t, n[t])
	}
	return strings.Join(types, ", ")
}

// correlationLine is a correlation rule that fired, in rules test's output.
type correlationLine struct {
	RuleID      string            `json:"rule_id"`
	Title       string            `json:"title"`
	Level       string            `json:"level,omitempty"`
	Correlation string            `json:"correlation"`
	Tenant      string            `json:"tenant"`
	Group       map[string]string `json:"group"`
	First       time.Time         `json:"first"`
	Last        time.Time         `json:"last"`
	Events      int               `json:"events"`
	// Metric is what value_sum, value_avg and value_percentile compared
	// (the sum, the average, the percentage of Value among the window's
	// values).
	Metric *float64 `json:"metric,omitempty"`
	Value  string   `json:"value,omitempty"`
}

// ruleCount is the last part of rules test's output.
type ruleCount struct {
	RuleID string `json:"rule_id"`
	Title  string `json:"title"`
	Count  int    `json:"count"`
}

// rulesTest runs rules over input files: matches, then counts, on out;
// rules that did not load and the input summary on errw.
func rulesTest(ctx context.Context, args []string, out, errw io.Writer) error {
	fs := newFlagSet("rules")
	var rules, ins stringsFlag
	fs.Var(&rules, "rules", "rule file or directory (repeatable)")
	fs.Var(&ins, "in", "input file (repeatable; positional arguments are inputs too)")
	tenant := fs.String("tenant", "", "with --in: tenant of inputs that name none (Windows events; default local); with --hunting: the only tenant read")
	hunting := fs.String("hunting", "", "backtest over the Parquet hunting partitions under this directory")
	imp := fs.Bool("import", false, "with --in: records that are no Windows event or Sentinel log are advanced-hunting export rows, their table inferred per row (as replay --import)")
	table := fs.String("table", "", "with --in: the table of the export rows (implies --import)")
	var since pipeline.Duration
	fs.TextVar(&since, "since", pipeline.Duration(30*24*time.Hour), "with --hunting: only partitions of the last this long (event time)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ins = append(ins, fs.Args()...)
	if len(rules) == 0 || len(ins) == 0 && *hunting == "" {
		return fmt.Errorf("%w: rules test needs --rules, and --in or --hunting", errUsage)
	}
	set, err := detect.Load(rules...)
	if err != nil {
		return err
	}
	for _, p := range set.Problems {
		fmt.Fprintln(errw, p)
	}
	enc := json.NewEncoder(out)
	var werr error
	t := detect.NewTester(set)
	defer t.Close()
	if *tenant != "" {
		t.Tenant = *tenant
	}
	t.Import, t.ImportTable = *imp, *table
	t.OnMatch = func(m detect.Match) {
		if err := enc.Encode(m); err != nil && werr == nil {
			werr = err
		}
	}
	t.OnCorrelation = func(m detect.CorrelationMatch) {
		line := correlationLine{RuleID: m.Rule.ID, Title: m.Rule.Title, Level: m.Rule.Level, Correlation: m.Rule.Type,
			Tenant: m.Tenant, Group: m.Group, First: m.First, Last: m.Last, Events: m.Events, Value: m.Value}
		if m.Rule.IsMetric() {
			line.Metric = &m.Metric
		}
		err := enc.Encode(line)
		if err != nil && werr == nil {
			werr = err
		}
	}
	for _, p := range t.Problems {
		fmt.Fprintln(errw, p)
	}
	for _, in := range ins {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		err = detect.ReadValues(f, t.Add)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	t.Flush()
	if *hunting != "" {
		tables := set.Tables()
		if len(tables) > 0 {
			o := parquet.ScanOptions{Tables: tables, Tenant: *tenant, Since: time.Now().Add(-since.D())}
			err := parquet.Scan(ctx, *hunting, o, func(b normalize.Batch) error {
				t.Batch(b)
				return werr
			})
			if err != nil {
				return err
			}
		}
	}
	rs := append([]*detect.Rule(nil), set.Rules...)
	sort.SliceStable(rs, func(i, j int) bool { return t.Counts[rs[i].Key()] > t.Counts[rs[j].Key()] })
	for _, r := range rs {
		if err := enc.Encode(ruleCount{RuleID: r.ID, Title: r.Title, Count: t.Counts[r.Key()]}); err != nil {
			return err
		}
	}
	for _, c := range set.Correlations {
		key := c.ID
		if key == "" {
			key = c.Title
		}
		if err := enc.Encode(ruleCount{RuleID: c.ID, Title: c.Title, Count: t.Counts[key]}); err != nil {
			return err
		}
	}
	total := 0
	for _, n := range t.Counts {
		total += n
	}
	fmt.Fprintf(errw, "%s read, %d not normalized%s, %s evaluated, %s of %s\n", english.Count(t.Records, "record"), t.Skipped, skipReasons(t.SkipReasons),
		english.Count(t.Rows, "row"), english.Count(total, "match"), english.Count(len(set.Rules), "rule"))
	if t.Skipped > 0 {
		fmt.Fprintf(errw, "last record not normalized: %s\n", t.LastSkip)
	}
	if nn := t.NotNumbers(); len(nn) > 0 {
		fmt.Fprintf(errw, "correlation values skipped as not numbers%s\n", skipReasons(nn))
	}
	return werr
}

// skipReasons renders the dead-letter reasons of the records not
// normalized: " (no_table 812, bad_timestamp 1)".
func skipReasons(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return " (" + b.String() + ")"
}
