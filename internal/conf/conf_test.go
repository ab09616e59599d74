package conf

import (
	"strings"
	"testing"
)

type sample struct {
	Sec struct {
		Name  string   `yaml:"name" default:"a b" flag:"cmd --name" env:"X_NAME" doc:"The stages' name, 'like-this' or ('that')."`
		List  []string `yaml:"list" default:"x, y" doc:"A list."`
		On    bool     `yaml:"on" default:"true" doc:"On."`
		Count int16    `yaml:"count" doc:"Count."`
	} `yaml:"sec" doc:"A section."`
}

func TestTagsDriveEverything(t *testing.T) {
	c := Default[sample]()
	if c.Sec.Name != "a b" || len(c.Sec.List) != 2 || !c.Sec.On || c.Sec.Count != 0 {
		t.Fatalf("defaults %+v", c)
	}
	k := MustLookup(c, "sec.name")
	if k.Markdown() != "The stages' name, `like-this` or (`that`)." || k.Usage() != "The stages' name, like-this or (that). (default a b)" {
		t.Fatalf("markdown %q usage %q", k.Markdown(), k.Usage())
	}
	if k.FlagCommand() != "cmd" || k.FlagName() != "name" {
		t.Fatalf("flag %q %q", k.FlagCommand(), k.FlagName())
	}
	if err := ApplyEnv(&c, func(string) string { return "env" }); err != nil || c.Sec.Name != "env" {
		t.Fatalf("env: %v %q", err, c.Sec.Name)
	}
	if err := Set(&c, "sec.count", "40000"); err == nil {
		t.Fatal("an int16 took 40000")
	}
	y := string(YAML(c, "head"))
	if want := "# head\nsec:\n  name: env  # or env X_NAME\n  list: [x, \"y\"]\n  on: true\n  count: 0\n"; y != want {
		t.Fatalf("yaml:\n%s\nwant:\n%s", y, want)
	}
	md := string(Markdown(c))
	for _, want := range []string{"## sec\n\nA section.\n", "| `sec.name` | `env` | The stages' name, `like-this` or (`that`). Flag `cmd --name`. Environment `X_NAME`. |", "| `X_NAME` | `sec.name` |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	out, err := Splice([]byte("a\n<b>\nold\n<e>\nz\n"), "<b>", "<e>", []byte("new\n"))
	if err != nil || string(out) != "a\n<b>\nnew\n<e>\nz\n" {
		t.Fatalf("splice %q %v", out, err)
	}
}
