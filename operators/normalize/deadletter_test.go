package normalize

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestDeadLetters runs the datadriven cases in testdata/deadletter (go test
// -rewrite rewrites their expectations). One command:
//
//	normalize [import[=Table]] [max-record-bytes=N] [quoted] [kafka-time=MS]
//	<one Kafka record value a line; Go-quoted with quoted, for bytes a text
//	file cannot hold>
//	----
//	dead <reason> <index>: <error>   (in the order they came out)
//	rows <normalized rows>
func TestDeadLetters(t *testing.T) {
	datadriven.Walk(t, "testdata/deadletter", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd != "normalize" {
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			}
			n, c := newChecked(t, caseOptions(t, td)...)
			var kafkaTime time.Time // the Kafka record's timestamp (none: the clock's)
			if td.HasArg("kafka-time") {
				var ms int64
				td.ScanArgs(t, "kafka-time", &ms)
				kafkaTime = time.UnixMilli(ms)
			}
			for i, line := range strings.Split(td.Input, "\n") {
				if td.HasArg("quoted") {
					var err error
					if line, err = strconv.Unquote(line); err != nil {
						t.Fatalf("%s: %v", td.Pos, err)
					}
				}
				n.Add(Input{Topic: "m365d", Partition: 3, Offset: int64(100 + i), Value: []byte(line), Timestamp: kafkaTime}, c.emit, c.deadL)
			}
			n.Flush(c.emit)
			var out strings.Builder
			for _, d := range c.dead {
				fmt.Fprintf(&out, "dead %s %d: %s\n", d.Reason, d.Index, d.Error)
				if d.Topic != "m365d" || d.Partition != 3 || d.Offset < 100 || d.Error == "" || d.Time.IsZero() {
					t.Errorf("dead letter lacks its origin or error: %+v", d)
				}
				checkDeadValue(t, d)
				if _, err := json.Marshal(d); err != nil {
					t.Errorf("dead letter cannot be encoded for the topic: %v", err)
				}
			}
			fmt.Fprintf(&out, "rows %d", c.rows())
			checkStats(t, n.Stats())
			return out.String()
		})
	})
}

func caseOptions(t *testing.T, td *datadriven.TestData) []Option {
	var opts []Option
	for _, a := range td.CmdArgs {
		switch a.Key {
		case "import":
			table := ""
			if len(a.Vals) > 0 {
				table = a.Vals[0]
			}
			opts = append(opts, WithImport(table))
		case "max-record-bytes":
			var n int
			a.Scan(t, 0, &n)
			opts = append(opts, WithMaxRecordBytes(n))
		case "quoted", "kafka-time":
		default:
			t.Fatalf("%s: unknown argument %q", td.Pos, a.Key)
		}
	}
	return opts
}

func checkDeadValue(t *testing.T, d DeadLetter) {
	t.Helper()
	v := []byte(d.Value)
	if d.ValueBase64 != "" {
		if d.Value != "" {
			t.Errorf("both Value and ValueBase64 set")
		}
		return
	}
	if !d.Truncated {
		sum := sha256.Sum256(v)
		if hex.EncodeToString(sum[:]) != d.SHA256 || len(v) != d.Size {
			t.Errorf("Size/SHA256 do not describe Value %q", d.Value)
		}
	}
}

// checkStats asserts the accounting invariant: every record is either
// normalized or dead.
func checkStats(t testing.TB, s Stats) {
	t.Helper()
	var sum int64
	for _, c := range s.Normalized {
		sum += c
	}
	for _, c := range s.Dead {
		sum += c
	}
	if sum != s.Records {
		t.Errorf("records %d != normalized + dead %d (%+v)", s.Records, sum, s)
	}
}
