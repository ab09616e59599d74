package conf

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
)

// YAML writes cfg as a YAML file, each key with its value, after the header
// lines (written as comments). A key set from the environment says so in a
// comment. Loading the result over anything gives cfg back.
func YAML(cfg any, header ...string) []byte {
	var b bytes.Buffer
	for _, h := range header {
		b.WriteString(strings.TrimRight("# "+h, " ") + "\n")
	}
	var open []string // the sections the previous key was in
	for _, k := range Keys(cfg) {
		parts := strings.Split(k.Path, ".")
		parents := parts[:len(parts)-1]
		same := 0
		for same < len(open) && same < len(parents) && open[same] == parents[same] {
			same++
		}
		for i := same; i < len(parents); i++ {
			fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), parents[i])
		}
		open = parents
		line := fmt.Sprintf("%s%s: %s", strings.Repeat("  ", len(parents)), parts[len(parts)-1], Value(cfg, k))
		if k.Env != "" {
			line += "  # or env " + k.Env
		}
		b.WriteString(line + "\n")
	}
	return b.Bytes()
}

// Markdown writes the key tables of cfg: one per section, each key with its
// default (its value in cfg) and its meaning, then the environment variables.
// Sections start at heading level 2.
func Markdown(cfg any) []byte {
	var b bytes.Buffer
	var env []Key
	for i, s := range Sections(cfg) {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "## %s\n\n", s.Name)
		if s.Doc != "" {
			b.WriteString(Key{Doc: s.Doc}.Markdown() + "\n\n")
		}
		b.WriteString("| key | default | meaning |\n|---|---|---|\n")
		for _, k := range s.Keys {
			meaning := k.Markdown()
			if k.Flag != "" {
				flag := "--" + k.FlagName()
				if c := k.FlagCommand(); c != "" {
					flag = c + " " + flag
				}
				meaning += " Flag `" + flag + "`."
			}
			if k.Env != "" {
				meaning += " Environment `" + k.Env + "`."
				env = append(env, k)
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", k.Path, Value(cfg, k), cell(meaning))
		}
	}
	if len(env) > 0 {
		b.WriteString("\n## Environment\n\n| variable | overrides |\n|---|---|\n")
		for _, k := range env {
			note := ""
			if k.Type.Kind() == reflect.Slice {
				note = " (comma-separated)"
			}
			fmt.Fprintf(&b, "| `%s` | `%s`%s |\n", k.Env, k.Path, note)
		}
	}
	return b.Bytes()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Splice replaces what lies between the lines begin and end in doc with
// body, so a generated part lives inside a hand-written file.
func Splice(doc []byte, begin, end string, body []byte) ([]byte, error) {
	i := bytes.Index(doc, []byte(begin+"\n"))
	j := bytes.Index(doc, []byte("\n"+end))
	if i < 0 || j < i {
		return nil, fmt.Errorf("markers %q and %q not found in order", begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)+1])
	b.Write(body)
	b.Write(doc[j+1:])
	return b.Bytes(), nil
}
