package normalize

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDeadLetters runs the cases in testdata/deadletter/*.txt. A case is
//
//	# comment
//	option import | option max-record-bytes=N
//	input <one Kafka record value>
//	quoted <a Go-quoted record value, for bytes a text file cannot hold>
//	----
//	dead <reason> <index> [word the error must contain]
//	rows <normalized rows>
//
// and the dead letters must come out in that order.
func TestDeadLetters(t *testing.T) {
	files, _ := filepath.Glob("testdata/deadletter/*.txt")
	if len(files) == 0 {
		t.Fatal("no cases")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			opts, inputs, want, wantRows := parseCase(t, f)
			n, c := newChecked(t, opts...)
			for i, in := range inputs {
				n.Add(Input{Topic: "m365d", Partition: 3, Offset: int64(100 + i), Value: in}, c.emit, c.deadL)
			}
			n.Flush(c.emit)
			var got []string
			for _, d := range c.dead {
				got = append(got, fmt.Sprintf("%s %d", d.Reason, d.Index))
				if d.Topic != "m365d" || d.Partition != 3 || d.Offset < 100 || d.Error == "" || d.Time.IsZero() {
					t.Errorf("dead letter lacks its origin or error: %+v", d)
				}
				checkDeadValue(t, d)
			}
			var wantDead []string
			for i, w := range want {
				wantDead = append(wantDead, w[0]+" "+w[1])
				if len(w) > 2 && i < len(c.dead) && !strings.Contains(c.dead[i].Error, w[2]) {
					t.Errorf("dead letter %d error %q does not name %q", i, c.dead[i].Error, w[2])
				}
			}
			if strings.Join(got, "\n") != strings.Join(wantDead, "\n") {
				t.Errorf("dead letters:\n%s\nwant:\n%s\nerrors: %+v", strings.Join(got, "\n"), strings.Join(wantDead, "\n"), c.dead)
			}
			if c.rows() != wantRows {
				t.Errorf("normalized %d rows, want %d", c.rows(), wantRows)
			}
			checkStats(t, n.Stats())
		})
	}
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

func parseCase(t *testing.T, path string) (opts []Option, inputs [][]byte, want [][]string, rows int64) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	expect := false
	for sc.Scan() {
		line := sc.Text()
		word, rest, _ := strings.Cut(line, " ")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case line == "----":
			expect = true
		case !expect && word == "option":
			k, v, _ := strings.Cut(rest, "=")
			switch k {
			case "import":
				opts = append(opts, WithImport(v))
			case "max-record-bytes":
				n, _ := strconv.Atoi(v)
				opts = append(opts, WithMaxRecordBytes(n))
			default:
				t.Fatalf("%s: unknown option %q", path, rest)
			}
		case !expect && word == "input":
			inputs = append(inputs, []byte(rest))
		case !expect && word == "quoted":
			s, err := strconv.Unquote(rest)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			inputs = append(inputs, []byte(s))
		case expect && word == "dead":
			want = append(want, strings.Fields(rest))
		case expect && word == "rows":
			rows, _ = strconv.ParseInt(rest, 10, 64)
		default:
			t.Fatalf("%s: cannot read line %q", path, line)
		}
	}
	return opts, inputs, want, rows
}
