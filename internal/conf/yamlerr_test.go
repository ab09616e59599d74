package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type durationKey time.Duration

func (d *durationKey) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = durationKey(v)
	return err
}

// A value of the wrong type names the key and what it takes, never a Go
// type; an unknown key is named by its path. In flow style too: the inner
// key, not the section around it (kafka: {bogus: 1} is kafka.bogus).
func TestLoadTypeErrorsSpeakConfig(t *testing.T) {
	type cfg struct {
		Sec struct {
			On    bool        `yaml:"on" doc:"On."`
			Count int16       `yaml:"count" doc:"Count."`
			List  []string    `yaml:"list" doc:"A list."`
			Every durationKey `yaml:"every" doc:"How often."`
			Items []struct {
				Name string `yaml:"name" doc:"Name."`
				Max  int    `yaml:"max" doc:"Max."`
			} `yaml:"items" doc:"Entries."`
		} `yaml:"sec" doc:"A section."`
	}
	for _, c := range []struct{ file, want string }{
		{"sec:\n  count: abc\n", `sec.count: want a whole number, got "abc"`},
		{"sec:\n  on: maybe\n", `sec.on: want true or false, got "maybe"`},
		{"sec:\n  count: 99999999999\n", `sec.count: want a whole number, got 99999999999 (too large)`},
		{"sec:\n  list: 5\n", `sec.list: want a list of text values, got integer`},
		{"sec: 3\n", `sec: want a section of keys, got integer`},
		{"sec:\n  every: [1]\n", `sec.every: want text, got [1]`},
		{"sec:\n  count: 1.5\n", `sec.count: want a whole number, got 1.5`},
		{"5\n", `the file: want a section of keys, got integer`},
		{"sec:\n  list:\n    - {a: 1}\n", `sec.list: want a list of text values, got "{"`},
		{"sec:\n  items: 5\n", `sec.items: want a list of sections (entries of keys), got integer`},
		{"sec:\n  items:\n    - name: [1]\n", `sec.items.name: want text, got "["`},
		{"sec:\n  items:\n    - name: a\n      max: x\n", `sec.items.max: want a whole number, got "x"`},
		// Flow style names the inner key, at its line and column.
		{"sec: {count: abc}\n", `[1:14] sec.count: want a whole number, got "abc"`},
		{"{sec: {on: maybe}}\n", `[1:12] sec.on: want true or false, got "maybe"`},
		{"sec: {list: [a], count: [1]}\n", `[1:25] sec.count: want a whole number, got "["`},
		{"sec: {items: [{name: a, max: x}]}\n", `[1:30] sec.items.max: want a whole number, got "x"`},
		{"sec:\n  items: [{name: a},\n    {max: x}]\n", `[3:11] sec.items.max: want a whole number, got "x"`},
		// An unknown key is named by its path, with the keys its section
		// takes.
		{"sec: {count: 1, bogus: 1}\n", `[1:17] sec.bogus: unknown key (sec takes on, count, list, every, items)`},
		{"sec:\n  count: 1\n  bogus: 1\n", `[3:3] sec.bogus: unknown key (sec takes on, count, list, every, items)`},
		{"sec:\n  items:\n    - {name: a, bogus: 1}\n", `[3:17] sec.items.bogus: unknown key (sec.items takes name, max)`},
		{"bogus: 1\n", `[1:1] bogus: unknown key (the file takes sec)`},
		// A key given twice is named by its path and both lines.
		{"sec:\n  count: 1\n  on: true\n  count: 2\n", `[4:3] sec.count: set twice (lines 2 and 4); keep one`},
		{"sec: {count: 1, count: 2}\n", `[1:17] sec.count: set twice (lines 1 and 1); keep one`},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(path, []byte(c.file), 0o644)
		_, err := Load[cfg](path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.file, err, c.want)
			continue
		}
		for _, goish := range []string{"Go struct", "Go value", "int16", "[]string", "conf."} {
			if strings.Contains(err.Error(), goish) {
				t.Errorf("%q: error mentions %q: %v", c.file, goish, err)
			}
		}
	}
}
