package kql

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTranslate: no query panics the lexer, parser or translator, a
// translation is deterministic, and a string literal, whatever it holds,
// reaches the SQL as one SQL string literal (a KQL literal cannot end the
// SQL literal and inject SQL). Seeds: every query of testdata/translate and
// testdata/fuzz/FuzzTranslate.
func FuzzTranslate(f *testing.F) {
	files, _ := filepath.Glob("testdata/translate/*")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, q := range caseInputs(string(b)) {
			f.Add(q, "x")
		}
	}
	f.Add(`DeviceProcessEvents | where FileName == "a"`, `x' OR 1=1 --`)
	f.Fuzz(func(t *testing.T, q, lit string) {
		sql, err := Translate(q)
		if again, err2 := Translate(q); again != sql || (err == nil) != (err2 == nil) {
			t.Fatalf("translation not deterministic: %q / %q", sql, again)
		}
		if !utf8.ValidString(lit) {
			return
		}
		esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(lit)
		sql, err = Translate(`DeviceProcessEvents | where FileName == "` + esc + `" | project FileName`)
		if err != nil {
			t.Fatalf("a plain string comparison does not translate: %v", err)
		}
		if want := "'" + strings.ReplaceAll(lit, "'", "''") + "'"; !strings.Contains(sql, want) {
			t.Fatalf("literal %q is not the SQL literal %s in:\n%s", lit, want, sql)
		}
	})
}

// caseInputs returns the inputs of the datadriven cases in a file: the
// lines between a command line and its "----".
func caseInputs(file string) []string {
	var out []string
	var cur []string
	in := false
	for _, l := range strings.Split(file, "\n") {
		switch {
		case !in && (strings.HasPrefix(l, "query") || strings.HasPrefix(l, "translate")):
			in, cur = true, nil
		case in && l == "----":
			out = append(out, strings.Join(cur, "\n"))
			in = false
		case in:
			cur = append(cur, l)
		}
	}
	return out
}
