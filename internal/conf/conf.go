// Package conf reads a configuration from the one place that describes it:
// the struct tags of its fields. A key's tags give its name, its default, its
// documentation, and the flag and environment variable that override it; the
// defaults, the strict YAML loader, the environment overrides, the flag help
// and the generated files (the defaults written out as YAML, the key tables
// in Markdown) all derive from them, so they cannot drift apart.
//
//	yaml:"name"      the key; ",inline" lifts a struct's keys to its own level
//	default:"value"  the default, written as in the YAML file (a list is
//	                 comma-separated); absent means the zero value
//	doc:"text"       what the key means, on every key and section; a struct
//	                 tag cannot hold a backquote, so code is written 'quoted'
//	                 (a quote that opens after a space or bracket and closes
//	                 before one), rendered as Markdown code in the tables and
//	                 as plain text in flag help
//	flag:"name"      the command-line flag that overrides the key;
//	                 "replay --table" for a flag of one command only
//	env:"NAME"       the environment variable that overrides the key
//
// A key is a field whose type is not a struct, or whose type parses itself
// from text (encoding.TextUnmarshaler, such as a duration).
package conf

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
)

// Key is one configuration key, as its tags describe it.
type Key struct {
	Path    string // dotted, as in the file: kafka.tls.enabled
	Doc     string
	Default string // the default tag, as written
	Flag    string // "name" or "command --name"; empty when no flag sets the key
	Env     string
	Type    reflect.Type
	index   []int
}

// Section is a top-level key holding others (kafka, topics, ...).
type Section struct {
	Name string
	Doc  string
	Keys []Key
}

// FlagName is the flag's name without dashes or command ("table").
func (k Key) FlagName() string {
	_, name := k.flagParts()
	return name
}

// FlagCommand is the command the flag belongs to, empty when the tag names none.
func (k Key) FlagCommand() string {
	cmd, _ := k.flagParts()
	return cmd
}

func (k Key) flagParts() (cmd, name string) {
	f := k.Flag
	if i := strings.LastIndexByte(f, ' '); i >= 0 {
		cmd, f = f[:i], f[i+1:]
	}
	return cmd, strings.TrimLeft(f, "-")
}

// Usage is the key's documentation as plain text, for flag help, with the
// default appended when it is not the zero value.
func (k Key) Usage() string {
	u := quoted.ReplaceAllString(k.Doc, "$1$2")
	if k.Default != "" {
		u += " (default " + k.Default + ")"
	}
	return u
}

// quoted matches 'code' in a doc: the quote opens after a space or bracket
// (so stages' and brokers' are not code) and the code holds no quote.
var quoted = regexp.MustCompile(`(^|[\s(\[])'([^'\s][^']*)'`)

// Markdown is the key's documentation with its 'code' in Markdown code marks.
func (k Key) Markdown() string { return quoted.ReplaceAllString(k.Doc, "$1`$2`") }

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	cache           sync.Map // reflect.Type -> []Section
)

// Sections lists the keys of cfg (a struct or a pointer to one) grouped by
// their top-level key, in declaration order.
func Sections(cfg any) []Section {
	t := structType(cfg)
	if v, ok := cache.Load(t); ok {
		return v.([]Section)
	}
	var out []Section
	for _, k := range walk(t, "", nil) {
		top, _, nested := strings.Cut(k.Path, ".")
		if !nested {
			panic(fmt.Sprintf("conf: key %s is not in a section", k.Path))
		}
		if len(out) == 0 || out[len(out)-1].Name != top {
			out = append(out, Section{Name: top, Doc: sectionDoc(t, top)})
		}
		out[len(out)-1].Keys = append(out[len(out)-1].Keys, k)
	}
	cache.Store(t, out)
	return out
}

// Keys lists every key of cfg in declaration order.
func Keys(cfg any) []Key {
	var out []Key
	for _, s := range Sections(cfg) {
		out = append(out, s.Keys...)
	}
	return out
}

// Lookup finds the key at a dotted path.
func Lookup(cfg any, path string) (Key, bool) {
	for _, k := range Keys(cfg) {
		if k.Path == path {
			return k, true
		}
	}
	return Key{}, false
}

// MustLookup is Lookup for paths a program names in its source: a missing
// key is a programming error.
func MustLookup(cfg any, path string) Key {
	k, ok := Lookup(cfg, path)
	if !ok {
		panic("conf: no key " + path)
	}
	return k
}

func structType(cfg any) reflect.Type {
	t := reflect.TypeOf(cfg)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("conf: %v is not a struct", t))
	}
	return t
}

func isLeaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshaler)
}

func walk(t reflect.Type, prefix string, index []int) []Key {
	var out []Key
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if opts == "inline" {
			out = append(out, walk(f.Type, prefix, idx)...)
			continue
		}
		if name == "" {
			panic(fmt.Sprintf("conf: field %s.%s has no yaml key", t, f.Name))
		}
		path := prefix + name
		if !isLeaf(f.Type) {
			out = append(out, walk(f.Type, path+".", idx)...)
			continue
		}
		out = append(out, Key{
			Path: path, Doc: f.Tag.Get("doc"), Default: f.Tag.Get("default"),
			Flag: f.Tag.Get("flag"), Env: f.Tag.Get("env"), Type: f.Type, index: idx,
		})
	}
	return out
}

// sectionDoc is the doc tag of the struct field holding a top-level key.
func sectionDoc(t reflect.Type, name string) string {
	for i := range t.NumField() {
		f := t.Field(i)
		key, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			if d := sectionDoc(f.Type, name); d != "" {
				return d
			}
		} else if key == name {
			return f.Tag.Get("doc")
		}
	}
	return ""
}

func field(ptr any, k Key) reflect.Value {
	v := reflect.ValueOf(ptr)
	if v.Kind() != reflect.Pointer {
		panic("conf: want a pointer to a config")
	}
	return v.Elem().FieldByIndex(k.index)
}

func value(cfg any, k Key) reflect.Value {
	v := reflect.ValueOf(cfg)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	return v.FieldByIndex(k.index)
}

// Default is a T with every key set to its default tag.
func Default[T any]() T {
	var c T
	SetDefaults(&c)
	return c
}

// Load reads a YAML file over the defaults of T (see LoadFile). Its errors
// never quote a secret of the file (redact.go).
func Load[T any](path string) (T, error) {
	c := Default[T]()
	if err := LoadFile(path, &c); err != nil {
		return c, redactError(err, readForRedaction(path))
	}
	return c, nil
}

// SetDefaults sets every key of *ptr that has a default tag to it. A default
// that does not parse is a programming error and panics (a test catches it).
func SetDefaults(ptr any) {
	for _, k := range Keys(ptr) {
		if k.Default == "" {
			continue
		}
		if err := Set(ptr, k.Path, k.Default); err != nil {
			panic(fmt.Sprintf("conf: default of %s: %v", k.Path, err))
		}
	}
}

// Set parses text into the key at path, as a default tag, a flag or an
// environment variable is parsed: a list is comma-separated.
func Set(ptr any, path, text string) error {
	k, ok := Lookup(ptr, path)
	if !ok {
		return fmt.Errorf("no key %s", path)
	}
	return parse(field(ptr, k), text)
}

func parse(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number that fits", s)
		}
		v.SetInt(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set a list of %v", v.Type().Elem())
		}
		v.Set(reflect.ValueOf(SplitList(s)))
	default:
		return fmt.Errorf("cannot set a %v", v.Type())
	}
	return nil
}

// SplitList splits a comma-separated list, dropping blanks; nil when empty.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ApplyEnv overrides the keys that have an env tag from the environment
// variables that are set and not empty.
func ApplyEnv(ptr any, getenv func(string) string) error {
	var errs []error
	for _, k := range Keys(ptr) {
		if k.Env == "" {
			continue
		}
		if s := getenv(k.Env); s != "" {
			if err := parse(field(ptr, k), s); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", k.Env, k.Path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// LoadFile reads a YAML file over *ptr, which holds the defaults. The file is
// strict: an unknown key is an error that names it and its line. An empty
// list means the same as an absent one (nil).
func LoadFile(path string, ptr any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalWithOptions(data, ptr, yaml.Strict()); err != nil {
		return fmt.Errorf("config %s:\n%s", path, loadError(err, data, ptr))
	}
	if msg, ok := fractionError(data, ptr); ok {
		return fmt.Errorf("config %s:\n%s", path, msg)
	}
	for _, k := range Keys(ptr) {
		if f := field(ptr, k); f.Kind() == reflect.Slice && f.Len() == 0 {
			f.SetZero()
		}
	}
	return nil
}

// Value is the key's value in cfg written as in the YAML file.
func Value(cfg any, k Key) string {
	v := value(cfg, k)
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err != nil {
			panic(fmt.Sprintf("conf: %s: %v", k.Path, err))
		}
		return scalar(string(b))
	}
	switch v.Kind() {
	case reflect.String:
		return scalar(v.String())
	case reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = scalar(v.Index(i).String())
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// scalar writes a string as YAML, quoted only when it must be.
func scalar(s string) string {
	b, err := yaml.Marshal(s)
	if err != nil {
		return strconv.Quote(s)
	}
	return strings.TrimSuffix(string(b), "\n")
}
