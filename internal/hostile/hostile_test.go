package hostile

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/stitch-xdr/stitch/internal/conf"
	"github.com/stitch-xdr/stitch/internal/query"
	"github.com/stitch-xdr/stitch/internal/shareddata"
	"github.com/stitch-xdr/stitch/pipeline"
)

// TestHostile runs the case files of testdata/hostile (see its README.md;
// go test -rewrite rewrites the expectations).
func TestHostile(t *testing.T) {
	dir := filepath.Join(shareddata.Root(t), "testdata", "hostile")
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in %s: %v", dir, err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			if testing.Short() {
				t.Skip("replays the pipeline")
			}
			t.Parallel()   // replays mostly wait: on commit intervals, on the broker
			var out string // the latest replay's output directory
			datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
				switch td.Cmd {
				case "replay":
					var res string
					out, res = runReplay(t, td)
					return res
				case "config":
					return runConfig(t, td)
				case "hunt":
					if out == "" {
						t.Fatalf("%s: hunt before any replay", td.Pos)
					}
					return runHunt(t, td, out)
				}
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
				return ""
			})
		})
	}
}

// input turns a case's input into the bytes of its file.
func input(t *testing.T, td *datadriven.TestData) []byte {
	t.Helper()
	text := td.Input
	if td.HasArg("gen") {
		tmpl, err := template.New(td.Pos).Funcs(template.FuncMap{
			"repeat": strings.Repeat,
			"bom":    func() string { return "\uFEFF" },
			"byte":   func(b int) string { return string([]byte{byte(b)}) },
		}).Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", td.Pos, err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, nil); err != nil {
			t.Fatalf("%s: %v", td.Pos, err)
		}
		text = b.String()
	}
	if td.HasArg("quoted") {
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			u, err := strconv.Unquote(l)
			if err != nil {
				t.Fatalf("%s: line %d is not a Go-quoted string: %v", td.Pos, i+1, err)
			}
			lines[i] = u
		}
		text = strings.Join(lines, "\n")
	}
	return []byte(text + "\n")
}

func runReplay(t *testing.T, td *datadriven.TestData) (string, string) {
	t.Helper()
	cfg := pipeline.Default()
	name := "input.jsonl"
	for _, a := range td.CmdArgs {
		switch {
		case a.Key == "gen" || a.Key == "quoted":
		case a.Key == "file":
			name = a.Vals[0]
		case strings.Contains(a.Key, "."):
			if err := conf.Set(&cfg, a.Key, strings.Join(a.Vals, ",")); err != nil {
				t.Fatalf("%s: %s: %v", td.Pos, a.Key, err)
			}
		default:
			t.Fatalf("%s: unknown argument %q", td.Pos, a.Key)
		}
	}
	out := t.TempDir()
	in := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(in, input(t, td), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sum, err := pipeline.Replay(ctx, cfg, pipeline.ReplayOptions{Inputs: []string{in}, OutDir: out})
	if err != nil {
		t.Fatalf("%s: replay: %v", td.Pos, err)
	}
	var total int64
	for _, n := range sum.Normalized {
		total += n
	}
	for _, n := range sum.DeadLettered {
		total += n
	}
	if total != sum.RecordsRead {
		t.Errorf("%s: normalized + dead-lettered = %d, records read %d", td.Pos, total, sum.RecordsRead)
	}
	if !maps.Equal(sum.HuntingRows, sum.Normalized) {
		t.Errorf("%s: the hunting Parquet holds %v, normalized %v: good records were lost", td.Pos, sum.HuntingRows, sum.Normalized)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "records read: %d\nnormalized:%s\ndead-lettered:%s\nhunting rows:%s\nincidents: %d\n",
		sum.RecordsRead, counts(sum.Normalized), counts(sum.DeadLettered), counts(sum.HuntingRows), sum.Incidents)
	for _, l := range deadLetters(t, out, sum.DeadLettered) {
		b.WriteString(l + "\n")
	}
	return out, b.String()
}

// counts prints a count map as " key=n" pairs in key order.
func counts(m map[string]int64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, " %s=%d", k, m[k])
	}
	return b.String()
}

// deadLetters reads deadletter.jsonl, checks that each dead letter carries
// its error, source and bytes and that they add up to the summary, and
// returns one sorted line per dead letter.
func deadLetters(t *testing.T, out string, want map[string]int64) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "deadletter.jsonl"))
	if err != nil {
		if len(want) == 0 && os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int64{}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var d struct {
			Reason, Error, Topic, SHA256 string
			Index                        int
			Offset                       *int64
			Size                         int
			Truncated                    bool
			Value                        *string
			ValueBase64                  *string `json:"value_base64"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("deadletter.jsonl: %v", err)
		}
		if d.Error == "" || d.Topic == "" || d.Offset == nil || len(d.SHA256) != 64 || d.Size <= 0 ||
			(d.Value == nil && d.ValueBase64 == nil) {
			t.Errorf("dead letter lacks its error, source or bytes: %s", sc.Bytes())
		}
		got[d.Reason]++
		lines = append(lines, fmt.Sprintf("dead %s %d: %s", d.Reason, d.Index, d.Error))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("deadletter.jsonl holds %v, the summary says %v", got, want)
	}
	slices.Sort(lines)
	return lines
}

func runHunt(t *testing.T, td *datadriven.TestData, out string) string {
	t.Helper()
	var opts []query.Option
	for _, a := range td.CmdArgs {
		switch a.Key {
		case "tenant":
			opts = append(opts, query.Tenant(strings.Join(a.Vals, ",")))
		case "kql":
			opts = append(opts, query.In(query.KQL))
		case "error":
		default:
			t.Fatalf("%s: unknown argument %q", td.Pos, a.Key)
		}
	}
	dir := filepath.Join(out, "hunting")
	q := strings.ReplaceAll(td.Input, "$OUT", out)
	res, err := query.Run(context.Background(), dir, q, opts...)
	if err != nil {
		if !td.HasArg("error") {
			t.Errorf("%s: query failed: %v", td.Pos, err)
		}
		msg, _, _ := strings.Cut(err.Error(), "\n") // DuckDB's LINE context shows a truncated path
		return "error: " + strings.ReplaceAll(msg, out, "$OUT") + "\n"
	}
	if td.HasArg("error") {
		t.Errorf("%s: the query should fail, it returned %d rows", td.Pos, len(res.Rows))
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(res.Columns)
	for _, r := range res.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			switch v := v.(type) {
			case nil:
			case time.Time:
				cells[i] = v.UTC().Format(time.RFC3339Nano)
			case []byte:
				cells[i] = string(v)
			default:
				cells[i] = fmt.Sprint(v)
			}
		}
		w.Write(cells)
	}
	w.Flush()
	return b.String()
}

// runConfig loads the input as stitch run --config does (pipeline.Load,
// then Validate) and says whether it was refused, whether the error names
// each names= key, and whether it shows any secret= value.
func runConfig(t *testing.T, td *datadriven.TestData) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stitch.yaml")
	if err := os.WriteFile(path, input(t, td), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.Load(path)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		return "accepted\n"
	}
	msg := err.Error()
	var b strings.Builder
	b.WriteString("refused\n")
	for _, a := range td.CmdArgs {
		for _, v := range a.Vals {
			switch a.Key {
			case "names":
				fmt.Fprintf(&b, "names %s: %v\n", v, strings.Contains(msg, v))
			case "secret":
				shown := strings.Contains(msg, v)
				fmt.Fprintf(&b, "shows the secret: %v\n", shown)
				if shown {
					t.Logf("%s: the error shows %q:\n%s", td.Pos, v, msg)
				}
			default:
				t.Fatalf("%s: unknown argument %q", td.Pos, a.Key)
			}
		}
	}
	return b.String()
}
