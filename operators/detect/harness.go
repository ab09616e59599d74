package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Match is one rule matching one row, with the row's key fields: what
// `stitch rules test` prints.
type Match struct {
	RuleID string         `json:"rule_id"`
	Title  string         `json:"title"`
	Level  string         `json:"level,omitempty"`
	Table  string         `json:"table"`
	Tenant string         `json:"tenant"`
	Fields map[string]any `json:"fields"`
}

// KeyColumns are the columns a match shows, where the row has them.
var KeyColumns = []string{
	"Timestamp", "DeviceName", "ActionType", "AccountDomain", "AccountName",
	"FileName", "FolderPath", "ProcessCommandLine", "InitiatingProcessFolderPath",
	"InitiatingProcessCommandLine", "RegistryKey", "RegistryValueName", "RegistryValueData",
	"RemoteIP", "RemotePort", "RemoteUrl", "SHA256",
	"AccountUpn", "AccountId", "AccountObjectId", "IPAddress", "Application", "OAuthAppId", "ObjectName",
	"InitiatingProcessAccountDomain", "InitiatingProcessAccountName",
}

// Tester runs rules offline over input records of every shape the
// pipeline reads (streaming-API records, Event Hubs envelopes, Windows
// events in the nested, OTRF flat and Sentinel forms), normalized as the
// pipeline normalizes them.
type Tester struct {
	// Tenant is the tenant of Windows events and export rows (they name
	// none); set it before the first Add.
	Tenant string
	// Import takes records that are no Windows event or Sentinel log as
	// advanced-hunting export rows, of ImportTable or of the table their
	// columns say (as replay --import); set it before the first Add.
	Import      bool
	ImportTable string
	// OnMatch receives every match.
	OnMatch func(Match)
	// Counts are the matches per rule (Rule.Key).
	Counts map[string]int
	// Records counts the records read; Skipped those no table took (dead
	// letters: Windows events of no table, bad records), by reason, with
	// the last one's error.
	Records, Skipped int
	SkipReasons      map[string]int
	LastSkip         string
	// Rows counts the rows the rules ran over.
	Rows int

	// OnCorrelation receives every correlation rule that fires.
	OnCorrelation func(CorrelationMatch)
	// Problems are the correlation rules that cannot run.
	Problems []Problem

	set  *Set
	ev   *Evaluator
	corr *Correlator
	norm *normalize.Normalizer
}

// NewTester returns a tester of the set's rules.
func NewTester(s *Set) *Tester {
	t := &Tester{Tenant: "local", Counts: map[string]int{}, SkipReasons: map[string]int{}, set: s, ev: s.NewEvaluator()}
	t.corr, t.Problems = s.NewCorrelator(t.ev)
	t.corr.Fire = func(m CorrelationMatch) {
		t.Counts[m.Rule.key()]++
		if t.OnCorrelation != nil {
			t.OnCorrelation(m)
		}
	}
	return t
}

// Add normalizes one record and evaluates what it completes.
func (t *Tester) Add(raw []byte) {
	t.Records++
	if t.norm == nil {
		opts := []normalize.Option{normalize.WithBatchRows(4096), normalize.WithDefaultTenant(t.Tenant)}
		if t.Import || t.ImportTable != "" {
			opts = append(opts, normalize.WithImport(t.ImportTable))
		}
		t.norm = normalize.New(opts...)
	}
	in := normalize.Input{Value: raw, Timestamp: time.Now()}
	if !t.norm.AddLog(in, t.batch, t.dead) {
		t.norm.Add(in, t.batch, t.dead)
	}
}

// Flush evaluates the rows still buffered.
func (t *Tester) Flush() {
	if t.norm != nil {
		t.norm.Flush(t.batch)
	}
}

// Close releases the normalizer.
func (t *Tester) Close() {
	if t.norm != nil {
		t.norm.Close()
	}
}

func (t *Tester) dead(d normalize.DeadLetter) {
	t.Skipped++
	t.SkipReasons[string(d.Reason)]++
	t.LastSkip = string(d.Reason) + ": " + d.Error
}

func (t *Tester) batch(b normalize.Batch) {
	defer b.Release()
	t.Batch(b)
}

// Batch evaluates a batch normalized elsewhere (a hunting partition); the
// caller keeps its reference.
func (t *Tester) Batch(b normalize.Batch) {
	t.Rows += int(b.Record.NumRows())
	ts := normalize.Times(b.Record, "Timestamp")
	t.ev.Eval(b, func(r *Rule, row int) {
		t.Counts[r.Key()]++
		if t.OnMatch != nil {
			t.OnMatch(Match{RuleID: r.ID, Title: r.Title, Level: r.Level, Table: b.Table, Tenant: b.Tenant, Fields: KeyFields(b, row)})
		}
		t.corr.Observe(b.Tenant, r, row, ts.Value(row))
	})
}

// NotNumbers are the values value_sum and value_avg correlations skipped
// because they are not numbers, by correlation title.
func (t *Tester) NotNumbers() map[string]int { return t.corr.NotNumbers }

// KeyFields reads the KeyColumns of one row that are set.
func KeyFields(b normalize.Batch, row int) map[string]any {
	out := map[string]any{}
	vals, present := make([]string, b.Record.NumRows()), make([]bool, b.Record.NumRows())
	for _, c := range KeyColumns {
		readColumn(b.Record, c, vals, present)
		if present[row] && vals[row] != "" {
			out[c] = vals[row]
		}
	}
	return out
}

// ReadValues calls fn with each JSON value of r: JSON lines, values one
// after another (pretty-printed or not), or the elements of top-level
// arrays.
func ReadValues(r io.Reader, fn func([]byte)) error {
	dec := json.NewDecoder(r)
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("detect: read input at byte %d: %w", dec.InputOffset(), err)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) > 0 && raw[0] == '[' {
			var elems []json.RawMessage
			if err := json.Unmarshal(raw, &elems); err != nil {
				return err
			}
			for _, e := range elems {
				fn(compact(e))
			}
			continue
		}
		fn(compact(raw))
	}
}

func compact(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}
