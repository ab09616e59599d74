package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// Correlation windows over a key-value store: the state of correlation
// rules as the pipeline keeps it (a changelogged state.TxStore of the
// detect-correlate stage) and as `stitch rules test` keeps it (a map). A
// base rule's match reaches them as an Event (the few fields correlations
// read, the entities of the matched row); each correlation rule and group
// of it has one window, its events within the rule's timespan by event
// time. A window that fires is cleared (it fires again only on new events)
// and its alert id is derived from the rule, tenant, group and the window's
// first event, so the same input yields the same alert however often it is
// processed. The metric types (metric.go) keep bounded samples; a
// value_percentile window stays when it fires, its alert id the group, the
// event's value and time.
//
// Key layout (one store of its own, state.dir/detect-correlate):
//
//	T 'W' tenant 0x00 sha256(rule, group)[:16] -> window (JSON)
//	T 'C' tenant 0x00                          -> the tenant's newest event time (i64 ns)
//
// The tenant clock ages windows no new event touches (Sweep).

// Event is one match of a base rule as correlations see it.
type Event struct {
	ID   string    `json:"id,omitempty"`
	Name string    `json:"name,omitempty"`
	Time time.Time `json:"time"`
	// Fields are the row's values of the Sigma fields correlations read
	// (group-by fields and value_count's field, through the aliases).
	Fields map[string]string `json:"fields,omitempty"`
	// Evidence are the entities of the matched row (NewAlert's), which the
	// correlation's alert carries so that it joins their incident.
	Evidence []correlate.EvidenceFact `json:"evidence,omitempty"`
}

// Events are a tenant's matches, as the detection tap sends them.
type Events struct {
	Tenant string  `json:"tenant"`
	Events []Event `json:"events"`
}

// KV is the store windows live in (state.TxStore has it).
type KV interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, val []byte) error
	Delete(key []byte) error
	Scan(prefix []byte, fn func(key, val []byte) error) error
}

const (
	spaceWindow = 'W'
	spaceClock  = 'C'
	// maxEvidence caps the entities a window keeps for its alert.
	maxEvidence = 32
)

// Windows evaluates a set's correlation rules over events, with their
// windows in a KV.
type Windows struct {
	set *Set
	kv  KV
	// cursor is the last window Sweep looked at.
	cursor []byte
	// skipped counts the values metric correlations skipped as no
	// numbers, by correlation title, until TakeSkipped.
	skipped map[string]int
}

// TakeSkipped returns the values value_sum and value_avg correlations
// skipped because they are not numbers since the last call, by correlation
// title, and forgets them: the pipeline counts them with the transaction
// of the events.
func (w *Windows) TakeSkipped() map[string]int {
	s := w.skipped
	w.skipped = nil
	return s
}

// NewWindows returns the correlation windows of the set's resolved
// correlation rules (ResolveCorrelations) in kv.
func (s *Set) NewWindows(kv KV) *Windows { return &Windows{set: s, kv: kv} }

// Fired is a correlation rule that fired, with its alert.
type Fired struct {
	Match CorrelationMatch
	Alert Alert
	// Standalone: the alert is raised (false for a correlation that only
	// feeds another, as for the rules they refer to: Set.Standalone).
	Standalone bool
}

type window struct {
	Rule     string                   `json:"rule"`
	Group    map[string]string        `json:"group"`
	Events   []windowEvent            `json:"events"`
	Evidence []correlate.EvidenceFact `json:"evidence,omitempty"`
}

type windowEvent struct {
	T     time.Time `json:"t"`
	Ref   int       `json:"r"`
	Value string    `json:"v,omitempty"`
	// Metric windows (metric.go): Sum is the value of value_sum and
	// value_avg; a sample merged past the cap stands for N events from
	// From to T.
	Sum  float64   `json:"s,omitempty"`
	N    int       `json:"n,omitempty"`
	From time.Time `json:"f,omitzero"`
}

// Correlated says whether a correlation rule refers to r: only those
// rules' matches need to reach the windows.
func (s *Set) Correlated(r *Rule) bool {
	for _, c := range s.Correlations {
		for _, ref := range c.Refs {
			if refers(ref, r.ID, r.Name) {
				return true
			}
		}
	}
	return false
}

// Standalone says whether r's matches are alerts of their own: unless a
// correlation rule refers to it and none of those says generate: true
// (the specification's default: only the correlation is generated).
func (s *Set) Standalone(r *Rule) bool { return s.standalone(r.ID, r.Name) }

func (s *Set) standalone(id, name string) bool {
	referred := false
	for _, c := range s.Correlations {
		for _, ref := range c.Refs {
			if refers(ref, id, name) {
				if c.Generate {
					return true
				}
				referred = true
			}
		}
	}
	return !referred
}

// Event reads the match of r on row of the batch ev is evaluating (from
// its match callback) as correlations see it.
func (s *Set) Event(ev *Evaluator, r *Rule, row int, t time.Time, evidence []correlate.EvidenceFact) Event {
	e := Event{ID: r.ID, Name: r.Name, Time: t, Evidence: evidence}
	for f, slot := range r.fieldSlots {
		if v, ok := ev.value(slot, row); ok && v != "" {
			if e.Fields == nil {
				e.Fields = map[string]string{}
			}
			e.Fields[f] = v
		}
	}
	return e
}

// Observe feeds a tenant's event to the correlations that refer to its
// rule and returns those that fired, chained ones included.
func (w *Windows) Observe(tenant string, e Event) ([]Fired, error) {
	if !state.ValidTenant(tenant) {
		return nil, fmt.Errorf("detect: correlate: invalid tenant %q", tenant)
	}
	if err := w.tick(tenant, e.Time); err != nil {
		return nil, err
	}
	var out []Fired
	for _, cr := range w.set.Correlations {
		for i, ref := range cr.Refs {
			if !refers(ref, e.ID, e.Name) {
				continue
			}
			read := func(f string) string { return e.Fields[cr.fieldOf(f, e.ID, e.Name)] }
			if err := w.add(cr, tenant, i, e.Time, read, e.Evidence, &out); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// tick advances the tenant's clock.
func (w *Windows) tick(tenant string, t time.Time) error {
	key := state.TenantKey(nil, spaceClock, tenant)
	v, ok, err := w.kv.Get(key)
	if err != nil {
		return err
	}
	if ok && len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= t.UnixNano() {
		return nil
	}
	return w.kv.Set(key, binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())))
}

func (w *Windows) clock(tenant string) (time.Time, error) {
	v, ok, err := w.kv.Get(state.TenantKey(nil, spaceClock, tenant))
	if err != nil || !ok || len(v) != 8 {
		return time.Time{}, err
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), nil
}

func windowKey(cr *Correlation, tenant, group string) []byte {
	sum := sha256.Sum256([]byte(cr.key() + "\x00" + group))
	return append(state.TenantKey(nil, spaceWindow, tenant), hex.EncodeToString(sum[:16])...)
}

func (w *Windows) add(cr *Correlation, tenant string, ref int, t time.Time, read func(string) string, evidence []correlate.EvidenceFact, out *[]Fired) error {
	group := map[string]string{}
	var gk strings.Builder
	for _, g := range cr.GroupBy {
		v := read(g)
		group[g] = v
		gk.WriteString(strings.ToLower(v) + "\x00")
	}
	value := ""
	if cr.Field != "" {
		value = read(cr.Field)
	}
	ev := windowEvent{T: t, Ref: ref, Value: value}
	if cr.IsMetric() {
		switch {
		case value == "":
			return nil // no observation
		case cr.Type == "value_percentile":
			ev.Value = strings.ToLower(value)
		default:
			n, ok := parseNumber(value)
			if !ok {
				if w.skipped == nil {
					w.skipped = map[string]int{}
				}
				w.skipped[cr.Title]++
				return nil
			}
			ev.Value, ev.Sum = "", n
		}
	}
	key := windowKey(cr, tenant, gk.String())
	win := window{Rule: cr.key(), Group: group}
	if v, ok, err := w.kv.Get(key); err != nil {
		return err
	} else if ok {
		if err := json.Unmarshal(v, &win); err != nil {
			return fmt.Errorf("detect: correlation window of %s: %w", cr.Title, err)
		}
	}
	win.Events = append(win.Events, ev)
	sort.SliceStable(win.Events, func(i, j int) bool { return win.Events[i].T.Before(win.Events[j].T) })
	newest := win.Events[len(win.Events)-1].T
	k := 0
	for k < len(win.Events) && win.Events[k].T.Before(newest.Add(-cr.Timespan)) {
		k++
	}
	win.Events = win.Events[k:]
	m := CorrelationMatch{Rule: cr, Tenant: tenant, Group: win.Group, Last: newest, Events: len(win.Events)}
	idGroup := gk.String()
	var fired bool
	if cr.IsMetric() {
		win.Events = capSamples(cr, win.Events)
		if t.Before(win.Events[0].from()) {
			// Older than the window (a late event): no observation, and
			// nothing changed to judge.
			return w.store(key, &win)
		}
		m.Metric, m.Events = metric(cr, win.Events, ev.Value)
		fired = cr.met(m.Metric)
		if cr.Type == "value_percentile" {
			// The window is the baseline: it stays, and the alert is the
			// event's, with its entities only.
			if !fired {
				return w.store(key, &win)
			}
			if err := w.store(key, &win); err != nil {
				return err
			}
			m.Value, m.First = value, win.Events[0].from()
			return w.fire(m, idGroup+"\x00"+ev.Value, t, mergeEvidence(nil, evidence), newest, out)
		}
	} else {
		fired = fires(cr, win.Events)
	}
	win.Evidence = mergeEvidence(win.Evidence, evidence)
	if !fired {
		return w.store(key, &win)
	}
	if err := w.kv.Delete(key); err != nil { // fires again only on new events
		return err
	}
	m.First = win.Events[0].from()
	return w.fire(m, idGroup, m.First, win.Evidence, newest, out)
}

// store writes a window that did not fire (or value_percentile's).
func (w *Windows) store(key []byte, win *window) error {
	v, err := json.Marshal(win)
	if err != nil {
		return err
	}
	return w.kv.Set(key, v)
}

// fire records a correlation that fired (its alert id from the rule,
// tenant, id group and time) and feeds it to the correlations that refer
// to it: they see the firing as an event of this rule at newest, with its
// group as the event's fields.
func (w *Windows) fire(m CorrelationMatch, idGroup string, idTime time.Time, evidence []correlate.EvidenceFact, newest time.Time, out *[]Fired) error {
	cr := m.Rule
	f := Fired{Match: m, Alert: correlationAlert(m, idGroup, idTime, evidence), Standalone: w.set.standalone(cr.ID, cr.Name)}
	*out = append(*out, f)
	for _, o := range w.set.Correlations {
		for i, ref := range o.Refs {
			if refers(ref, cr.ID, cr.Name) {
				read := func(f string) string { return m.Group[o.fieldOf(f, cr.ID, cr.Name)] }
				if err := w.add(o, m.Tenant, i, newest, read, evidence, out); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// mergeEvidence adds the evidence whose entities the window lacks, up to
// maxEvidence.
func mergeEvidence(have, add []correlate.EvidenceFact) []correlate.EvidenceFact {
	for _, e := range add {
		if len(have) >= maxEvidence {
			break
		}
		dup := false
		for _, h := range have {
			if strings.Join(h.Entities, "\x00") == strings.Join(e.Entities, "\x00") {
				dup = true
				break
			}
		}
		if !dup {
			have = append(have, e)
		}
	}
	return have
}

// correlationAlert is the alert of a fired correlation: the rule's title,
// level and tags, at the window's last event, with the window's entities;
// its id is the rule, tenant, group and the window's first event's time
// (value_percentile: the group and value, and the event's time).
func correlationAlert(m CorrelationMatch, group string, at time.Time, evidence []correlate.EvidenceFact) Alert {
	cr := m.Rule
	key := strings.Join([]string{m.Tenant, cr.key(), group, strconv.FormatInt(at.UnixNano(), 10)}, "\x00")
	sum := sha256.Sum256([]byte(key))
	id := "sigma-corr-" + hex.EncodeToString(sum[:12])
	evs := make([]correlate.EvidenceFact, len(evidence))
	for i, e := range evidence {
		e.AlertID = id
		evs[i] = e
	}
	return Alert{Key: key, Evidence: evs, Info: correlate.AlertFact{
		ID: id, Time: m.Last, Title: cr.Title, Severity: Severity(cr.Level), Category: category(cr.Tags),
		ServiceSource: ServiceSource, DetectionSource: DetectionSource, Techniques: cr.Techniques,
	}}
}

func fires(cr *Correlation, evs []windowEvent) bool {
	switch cr.Type {
	case "event_count":
		return cr.met(float64(len(evs)))
	case "value_count":
		seen := map[string]bool{}
		for _, e := range evs {
			if e.Value != "" {
				seen[strings.ToLower(e.Value)] = true
			}
		}
		return cr.met(float64(len(seen)))
	case "temporal":
		seen := map[int]bool{}
		for _, e := range evs {
			seen[e.Ref] = true
		}
		if len(cr.conds) > 0 {
			return cr.met(float64(len(seen)))
		}
		return len(seen) == len(cr.Refs)
	case "temporal_ordered":
		next := 0
		for _, e := range evs {
			if next < len(cr.Refs) && e.Ref == next {
				next++
			}
		}
		return next == len(cr.Refs)
	}
	return false
}

// Sweep deletes the windows whose newest event is a timespan behind their
// tenant's clock (owns: whether this process may age a tenant's state; nil:
// all). It looks at most limit windows, going on after the last one the
// previous call looked at, and says how many it deleted.
func (w *Windows) Sweep(owns func(tenant string) bool, limit int) (int, error) {
	spans := map[string]time.Duration{}
	for _, c := range w.set.Correlations {
		spans[c.key()] = c.Timespan
	}
	clocks := map[string]time.Time{}
	var stale [][]byte
	scanned := 0
	from := w.cursor
	err := w.kv.Scan([]byte{'T', spaceWindow}, func(k, v []byte) error {
		if scanned >= limit {
			return errSwept
		}
		if from != nil && bytes.Compare(k, from) <= 0 {
			return nil
		}
		scanned++
		w.cursor = bytes.Clone(k)
		tenant, _, ok := state.KeyTenant(k)
		if !ok || owns != nil && !owns(string(tenant)) {
			return nil
		}
		var win window
		var span time.Duration
		known := false
		if json.Unmarshal(v, &win) == nil {
			span, known = spans[win.Rule]
		}
		if !known || len(win.Events) == 0 { // unreadable, or its rule is gone
			stale = append(stale, bytes.Clone(k))
			return nil
		}
		now, seen := clocks[string(tenant)]
		if !seen {
			var err error
			if now, err = w.clock(string(tenant)); err != nil {
				return err
			}
			clocks[string(tenant)] = now
		}
		if win.Events[len(win.Events)-1].T.Add(span).Before(now) {
			stale = append(stale, bytes.Clone(k))
		}
		return nil
	})
	if errors.Is(err, errSwept) {
		err = nil
	} else if err == nil {
		w.cursor = nil // every window seen: start over next time
	}
	if err != nil {
		return 0, err
	}
	for _, k := range stale {
		if err := w.kv.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(stale), nil
}

// errSwept stops Sweep's scan at its limit.
var errSwept = errors.New("detect: sweep limit reached")

// memKV is a KV in memory (stitch rules test).
type memKV map[string][]byte

func (m memKV) Get(k []byte) ([]byte, bool, error) { v, ok := m[string(k)]; return v, ok, nil }
func (m memKV) Set(k, v []byte) error              { m[string(k)] = bytes.Clone(v); return nil }
func (m memKV) Delete(k []byte) error              { delete(m, string(k)); return nil }

func (m memKV) Scan(prefix []byte, fn func(k, v []byte) error) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), m[k]); err != nil {
			return err
		}
	}
	return nil
}

// NewMemKV returns an empty KV in memory.
func NewMemKV() KV { return memKV{} }
