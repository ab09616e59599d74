package appconfig

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/conf"
	"github.com/stitch-xdr/stitch/pipeline"
)

const configs = "../../configs"

// configs/stitch.yaml and the key tables of configs/README.md are generated
// from the tags; they must say what the tags say.
func TestGeneratedFilesInStep(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(configs, README))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Files(readme)
	if err != nil {
		t.Fatalf("%v\nput the markers back around the key tables and run: %s", err, regenerate)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(configs, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(data) {
			t.Errorf("configs/%s is out of step with the config structs' tags (first difference at line %d); run: %s",
				name, firstDiffLine(string(got), string(data)), regenerate)
		}
	}
}

func firstDiffLine(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// The shipped stitch.yaml is the defaults written out: loading it gives
// exactly Default(), whose pipeline part is pipeline.Default().
func TestShippedConfigIsTheDefault(t *testing.T) {
	cfg, err := Load(filepath.Join(configs, YAMLFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("configs/stitch.yaml differs from Default():\n got %+v\nwant %+v", cfg, want)
	}
	if !reflect.DeepEqual(Default().Config, pipeline.Default()) {
		t.Fatal("the binary's defaults of the pipeline keys differ from pipeline.Default()")
	}
}

// Every key is documented in a form the tables and the flag help can carry,
// and names its flag and variable once.
func TestEveryKeyDocumented(t *testing.T) {
	keys := conf.Keys(Config{})
	if len(keys) < 60 {
		t.Fatalf("only %d keys", len(keys))
	}
	flags, envs := map[string]string{}, map[string]string{}
	for _, k := range keys {
		switch {
		case k.Doc == "":
			t.Errorf("%s has no doc tag", k.Path)
		case strings.ContainsAny(k.Doc, "|\n"), !strings.HasSuffix(k.Doc, "."):
			t.Errorf("%s: a doc is one line ending in a period, without '|': %q", k.Path, k.Doc)
		case strings.Count(k.Markdown(), "`")%2 != 0:
			t.Errorf("%s: a 'code' quote is not closed: %q", k.Path, k.Doc)
		}
		if k.Flag != "" {
			if other, dup := flags[k.Flag]; dup {
				t.Errorf("flag %s is on %s and %s", k.Flag, other, k.Path)
			}
			flags[k.Flag] = k.Path
		}
		if k.Env != "" {
			if other, dup := envs[k.Env]; dup {
				t.Errorf("variable %s is on %s and %s", k.Env, other, k.Path)
			}
			envs[k.Env] = k.Path
		}
	}
	for _, s := range conf.Sections(Config{}) {
		if len(s.Keys) == 0 {
			t.Errorf("section %s has no keys", s.Name)
		}
	}
}

// The binary's sections and the pipeline's, inlined beside them, are both
// strict: an unknown key is named, with its line.
func TestUnknownKeyNamesTheLine(t *testing.T) {
	for _, c := range []struct{ yaml, key, line string }{
		{"kafka:\n  group: x\nlog:\n  levle: debug\n", "levle", "4"},
		{"http:\n  addr: x\nstate:\n  dri: /tmp\n", "dri", "4"},
		{"simulate:\n  rate: 1\nsimulator: {}\n", "simulator", "3"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(path, []byte(c.yaml), 0o644)
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), c.key) ||
			!regexp.MustCompile(`\b`+c.line+`\b`).MatchString(err.Error()) {
			t.Errorf("%q: error does not name %s and line %s: %v", c.yaml, c.key, c.line, err)
		}
	}
}

func TestOverridesAndValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("kafka:\n  brokers: []\nhttp:\n  addr: :9000\nsimulate:\n  mode: maybe\nnormalize:\n  batch_rows: 0\nlog:\n  format: xml\n"), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != ":9000" || cfg.Simulate.Rate != 2000 || cfg.Topics.Incidents != "incidents" || cfg.Kafka.Brokers != nil {
		t.Fatalf("file over defaults: %+v", cfg)
	}
	err = cfg.Validate()
	for _, want := range []string{"normalize.batch_rows", "simulate.mode", "log.format"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error does not name %s: %v", want, err)
		}
	}
	cfg = Default()
	if !cfg.Simulating() {
		t.Fatal("on the embedded broker the simulator is on by default")
	}
	cfg.Kafka.Brokers = []string{"a:1"}
	if cfg.Simulating() {
		t.Fatal("with brokers the simulator is off by default")
	}
}

// Validation errors name keys that exist (a zero config fails most checks).
func TestValidationNamesRealKeys(t *testing.T) {
	var zero Config
	err := zero.Validate()
	if err == nil {
		t.Fatal("a zero config is valid")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) < 10 {
		t.Fatalf("only %d problems found in a zero config: %v", len(lines), err)
	}
	for _, line := range lines {
		key, _, _ := strings.Cut(line, ":")
		if _, ok := conf.Lookup(Config{}, key); !ok {
			t.Errorf("validation names %q, which is no key: %s", key, line)
		}
	}
}

func TestKeyUsageIsItsDoc(t *testing.T) {
	if got := Key("state.dir").Usage(); got != "Local state (Pebble stores) and, by default, hunting partitions. (default ./stitch-data)" {
		t.Fatalf("usage %q", got)
	}
	if got := Key("kafka.brokers").Usage(); !strings.Contains(got, "(host:port)") || strings.Contains(got, "'") {
		t.Fatalf("usage keeps its code quotes: %q", got)
	}
	if k := Key("normalize.import_table"); k.FlagName() != "table" || k.FlagCommand() != "replay" {
		t.Fatalf("flag of %s: %q %q", k.Path, k.FlagCommand(), k.FlagName())
	}
}
