package detect

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// TestSigmaRegression runs every rule/event pair of the SigmaHQ regression
// data (regression_index.tsv) through the Windows input path: the event is
// normalized into its table, the rule compiled against the taxonomy, and
// the rule must match the expected number of times (at least once where
// the index gives no count). Rules the tables cannot express are listed
// with the reason; a supported rule that misses fails the test.
func TestSigmaRegression(t *testing.T) {
	dir := shareddata.Path(t, "sigma")
	f, err := os.Open(filepath.Join(dir, "regression_index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	sc.Scan() // header
	passed, failed := 0, 0
	var unsupported, failures, more []string
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 10 {
			continue
		}
		rulePath, id, eventPath, want := c[1], c[2], c[7], c[9]
		set, err := Load(filepath.Join(dir, rulePath))
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Rules) == 0 {
			for _, p := range set.Problems {
				if p.Unsupported {
					unsupported = append(unsupported, fmt.Sprintf("%s %s: %s", id, c[3], p.Reason))
				} else {
					failed++
					failures = append(failures, fmt.Sprintf("%s: does not load: %s", rulePath, p))
				}
			}
			continue
		}
		tester := NewTester(set)
		ev, err := os.Open(filepath.Join(dir, eventPath))
		if err != nil {
			t.Fatal(err)
		}
		err = ReadValues(ev, tester.Add)
		ev.Close()
		if err != nil {
			t.Fatalf("%s: %v", eventPath, err)
		}
		tester.Flush()
		tester.Close()
		// match_count is a lower bound: several event files hold more
		// events that the rule matches than their info.yml counts (three
		// procdump files dropped, each matching \procdump*.exe, counted
		// as one); those are listed.
		got := tester.Counts[id]
		n, err := strconv.Atoi(want)
		if err != nil {
			n = 1
		}
		if got > n {
			more = append(more, fmt.Sprintf("%s: %d matches of %d events, index says %s", rulePath, got, tester.Records, want))
		}
		if got >= n {
			passed++
			continue
		}
		failed++
		failures = append(failures, fmt.Sprintf("%s (%s): %d matches, want %q (events %d, skipped %d: %s)", rulePath, set.Rules[0].Table, got, want, tester.Records, tester.Skipped, tester.LastSkip))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("unsupported rules (%d):\n  %s", len(unsupported), strings.Join(unsupported, "\n  "))
	t.Logf("more matches than the index counts (%d):\n  %s", len(more), strings.Join(more, "\n  "))
	for _, f := range failures {
		t.Errorf("%s", f)
	}
	fmt.Printf("sigma regression: %d passed, %d failed, %d unsupported\n", passed, failed, len(unsupported))
}

// TestLegacyRulesRejected: the Sigma 1 rules of unsupported/ (aggregations
// in the condition) are errors, each with file, line and reason.
func TestLegacyRulesRejected(t *testing.T) {
	dir := shareddata.Path(t, "sigma/unsupported")
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 0 {
		t.Errorf("loaded %d legacy rules", len(set.Rules))
	}
	if len(set.Errors()) == 0 {
		t.Fatal("no errors")
	}
	for _, p := range set.Problems {
		if p.Unsupported || p.Line < 1 || !strings.Contains(p.Reason, "Sigma 1") {
			t.Errorf("problem %s: want an error naming Sigma 1 syntax with a line", p)
		}
		t.Log(p)
	}
}
