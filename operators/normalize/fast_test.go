package normalize

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// withoutFastPath sends every record through the fastjson path.
func withoutFastPath() Option { return func(c *config) { c.noFast = true } }

// dumpRun normalizes inputs and describes everything that came out (batches
// with their columns as JSON, dead letters, stats) as text.
func dumpRun(t testing.TB, inputs [][]byte, opts ...Option) string {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	clock := func() time.Time { return time.Unix(1700000000, 0).UTC() }
	n := New(append([]Option{WithAllocator(mem), WithClock(clock)}, opts...)...)
	defer n.Close()
	var out strings.Builder
	var flushed []string
	batch := func(b Batch) string {
		var w strings.Builder
		fmt.Fprintf(&w, "batch %s %s rows=%d bytes=%d %v %v\n%s\n", b.Table, b.Tenant, b.Record.NumRows(), b.Bytes, b.MinTime, b.MaxTime, b.Record.Schema())
		for i, c := range b.Record.Columns() {
			js, err := c.MarshalJSON()
			fmt.Fprintf(&w, " %s %s %v\n", b.Record.ColumnName(i), js, err)
		}
		b.Release()
		return w.String()
	}
	emit := func(b Batch) { out.WriteString(batch(b)) }
	dead := func(d DeadLetter) { fmt.Fprintf(&out, "dead %+v\n", d) }
	for i, in := range inputs {
		n.Add(Input{Offset: int64(i), Value: in}, emit, dead)
	}
	n.Flush(func(b Batch) { flushed = append(flushed, batch(b)) })
	sort.Strings(flushed) // Flush walks a map
	out.WriteString(strings.Join(flushed, ""))
	fmt.Fprintf(&out, "stats %+v\n", n.Stats())
	return out.String()
}

// checkSamePaths fails when the fast path makes anything of inputs other
// than what the fastjson path makes.
func checkSamePaths(t testing.TB, inputs [][]byte, opts ...Option) {
	t.Helper()
	fast := dumpRun(t, inputs, opts...)
	slow := dumpRun(t, inputs, append(opts, withoutFastPath())...)
	if fast != slow {
		fl, sl := strings.Split(fast, "\n"), strings.Split(slow, "\n")
		for i := range min(len(fl), len(sl)) {
			if fl[i] != sl[i] {
				t.Fatalf("fast path differs at line %d:\nfast: %.500s\nslow: %.500s", i, fl[i], sl[i])
			}
		}
		t.Fatalf("fast path output has %d lines, fastjson path %d", len(fl), len(sl))
	}
}

// TestFastPathSameAsFastjson puts every kind of value (scalars of each JSON
// type for each column type, escapes, nested values, odd numbers and
// literals) into every property of the table records, alone and in
// envelopes, under several depth limits, and checks both paths agree.
func TestFastPathSameAsFastjson(t *testing.T) {
	files, _ := filepath.Glob("testdata/tables/*.json")
	if len(files) == 0 {
		t.Fatal("no table records")
	}
	subs := []string{`null`, `true`, `false`, `0`, `1`, `-1`, `2`, `1.5`, `1e3`, `-0`, `007`, `99999999999999999999`,
		`123456789012345678`, `-2147483649`, `"1"`, `"0"`, `"TRUE"`, `"true"`, `""`, `"x"`, `"2021-08-02T13:11:39Z"`,
		`"2021-08-02 13:11:39.123"`, `"\u00e9\ud83d\ude00"`, `"\ud800x"`, `"\u12"`, `"a\qb\\"`, `"\"q\"\/\b\f\n\r\t"`,
		`{"a":[1,{"b":null}],"c":"\u0041","\u0042":"é"}`, `[]`, `{}`, `[[[1]]]`, `-`, `NaN`, `-inf`, `1-2`, `+1`, `tru`,
		`nulll`, "\"ctl\x01\"", `"k\"ey"`, `-9223372036854775809`, `-9223372036854775808`, `9007199254740993.0`,
		`-9223372036854775808.5`, `1e19`, `12e-1`, `"-9223372036854775809"`}
	var inputs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
		for ki, m := range regexp.MustCompile(`\n  "([A-Za-z0-9_]+)": `).FindAllSubmatch(b, -1) {
			re := regexp.MustCompile(`("` + string(m[1]) + `": )([^\n]*?)(,?\n)`)
			for si, sv := range subs {
				if (ki+si)%7 != 0 {
					continue // a seventh of the pairs: still every value in columns of each type
				}
				inputs = append(inputs, re.ReplaceAll(b, []byte("${1}"+strings.ReplaceAll(sv, "$", "$$")+"${3}")))
			}
		}
		for _, r := range [][2]string{
			{`"category"`, `"cat"`},
			{`"properties": {`, `"properties": {"Timestamp": "2021-01-01T00:00:00Z", "Extra\u0041": 1, "ReportId_long": 5, "ReportId_string": "", "X": {"y": "\u0041"}, `},
			{`"tenantId"`, `"tenantId": 5, "tenantId"`},
			{`"time"`, `"time": 5, "time"`},
			{`"time"`, `"category": "AdvancedHunting-DeviceInfo", "time"`},
			{`"time"`, `"properties": {"a":1}, "time"`},
			{`"time"`, `"x": {"a":[[{"b":[1]}]]}, "time"`},
			{`"time"`, `"records": [], "time"`},
			{`"Timestamp"`, `"Timestamp": null, "Timestamp"`},
			{`"properties": {`, `"properties": {"Dup": 1, "Dup": 2, `},
			{`"tenantId": "`, `"tenantId": "\u0000`},
			{`"tenantId": "`, `"tenantId": "x\u0000`},
		} {
			inputs = append(inputs, bytes.Replace(b, []byte(r[0]), []byte(r[1]), 1))
		}
		inputs = append(inputs, regexp.MustCompile(`"Timestamp": "[^"]*",?`).ReplaceAll(b, nil))
		compact := regexp.MustCompile(`\s+`).ReplaceAll(b, []byte(" "))
		inputs = append(inputs, compact, bytes.ReplaceAll(compact, []byte(" "), nil), append(append([]byte(" \t\r\n"), b...), " x"...))
	}
	for i := 0; i+4 < len(inputs); i += 4 {
		env := []byte(`{"records":[`)
		env = append(append(append(append(env, inputs[i]...), ','), inputs[i+1]...), "],\"n\":[1,{\"a\":2}]}"...)
		inputs = append(inputs, env, append(append([]byte(`{"records":[`), inputs[i+2]...), `]}`...))
		twice := append(append([]byte(`{"records":[`), inputs[i+3]...), `],"records":[]}`...) // a duplicate key
		inputs = append(inputs, twice)
	}
	for _, opts := range [][]Option{nil, {WithMaxDepth(2)}, {WithMaxDepth(3), WithBatchRows(7)}, {WithMaxDepth(5), WithBatchBytes(5000)}} {
		checkSamePaths(t, inputs, opts...)
	}
}
