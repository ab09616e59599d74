package conf

import (
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// loadError is the message of a YAML decoding error, for a person: a value
// of the wrong type names the key and what it takes ("a whole number",
// "true or false"), never the Go types the decoder speaks of.
func loadError(err error, data []byte, ptr any) string {
	var (
		tk  *token.Token
		got string
	)
	var te *yaml.TypeError
	var oe *yaml.OverflowError
	var ue *yaml.UnexpectedNodeTypeError
	var fe *yaml.UnknownFieldError
	var se *yaml.SyntaxError
	switch {
	case errors.As(err, &fe) && fe.Token != nil && fe.Token.Position != nil:
		return unknownKey(data, ptr, fe.Token)
	case errors.As(err, &se) && se.Token != nil && se.Token.Position != nil && strings.Contains(se.Message, "already defined at"):
		return repeatedKey(data, se)
	case errors.As(err, &te):
		tk = te.Token
	case errors.As(err, &oe):
		tk, got = oe.Token, oe.SrcNum+" (too large)"
	case errors.As(err, &ue):
		tk, got = ue.Token, strings.ToLower(ue.Actual.String())
	default:
		if msg, ok := textValueError(data, ptr); ok {
			return msg
		}
		return yaml.FormatError(err, false, true)
	}
	if tk == nil || tk.Position == nil {
		return yaml.FormatError(err, false, true)
	}
	path := keyPath(data, tk.Position.Line, tk.Position.Column, false)
	if got == "" {
		got = fmt.Sprintf("%q", tk.Value)
	}
	want := "a value of another kind (see configs/README.md)"
	if t, ok := typeAt(structType(ptr), path); ok {
		want = Describe(t)
	}
	name := path
	if name == "" {
		name = "the file"
	}
	return yaml.FormatErrorWithToken(fmt.Sprintf("%s: want %s, got %s", name, want, got), tk, false, true)
}

// unknownKey is the message of an unknown key: its dotted path
// (kafka.bogus, in block or flow style alike) and the keys its section
// takes.
func unknownKey(data []byte, ptr any, tk *token.Token) string {
	path := keyPath(data, tk.Position.Line, tk.Position.Column, true)
	if path == "" {
		path = tk.Value
	}
	msg := path + ": unknown key"
	parent, _, _ := cutLast(path)
	if t, ok := typeAt(structType(ptr), parent); ok {
		if keys := keysOf(t); len(keys) > 0 {
			msg += fmt.Sprintf(" (%s takes %s)", cmp.Or(parent, "the file"), strings.Join(keys, ", "))
		}
	}
	return yaml.FormatErrorWithToken(msg, tk, false, true)
}

// repeatedKey is the message of a key given twice in one section: its
// dotted path and both lines (the parser's own names the bare key and a
// [line:column]).
func repeatedKey(data []byte, se *yaml.SyntaxError) string {
	tk := se.Token
	path := keyPath(data, tk.Position.Line, tk.Position.Column, true)
	if path == "" {
		path = tk.Value
	}
	msg := fmt.Sprintf("%s: set twice (again at line %d); keep one", path, tk.Position.Line)
	var first, col int
	if i := strings.LastIndex(se.Message, "already defined at ["); i >= 0 {
		if n, _ := fmt.Sscanf(se.Message[i:], "already defined at [%d:%d]", &first, &col); n == 2 {
			msg = fmt.Sprintf("%s: set twice (lines %d and %d); keep one", path, first, tk.Position.Line)
		}
	}
	return yaml.FormatErrorWithToken(msg, tk, false, true)
}

// cutLast splits a dotted path before its last key.
func cutLast(path string) (parent, key string, ok bool) {
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return "", path, false
	}
	return path[:i], path[i+1:], true
}

// keysOf lists the yaml keys of the section type t (inlined structs
// included; nothing for a map or a value).
func keysOf(t reflect.Type) []string {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || parsesText(t) {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		key, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			out = append(out, keysOf(f.Type)...)
		case key != "" && key != "-" && f.IsExported():
			out = append(out, key)
		}
	}
	return out
}

// keyPath is the dotted path of the key at line:column (key) or of the key
// whose value is there: from the document's nodes, so that flow style
// (kafka: {brokers: [x], bogus: 1}) names the inner key; from the
// indentation of the lines above where the document does not parse so far.
// Entries of a list add no step (auth.tokens.sha256).
func keyPath(data []byte, line, column int, key bool) string {
	// Duplicate keys allowed: a repeated key is located like any other.
	if f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey()); err == nil {
		for _, doc := range f.Docs {
			if path, ok := nodePath(doc.Body, nil, line, column, key); ok {
				return strings.Join(path, ".")
			}
		}
	}
	return indentKeyPath(data, line, column)
}

// nodePath finds the node at line:column under n (at path), as nodePath.
func nodePath(n ast.Node, path []string, line, column int, key bool) ([]string, bool) {
	if n == nil {
		return nil, false
	}
	if !key && at(n.GetToken(), line, column) {
		return path, true
	}
	switch n := n.(type) {
	case *ast.DocumentNode:
		return nodePath(n.Body, path, line, column, key)
	case *ast.MappingNode:
		return nodesPath(n.Values, path, line, column, key)
	case *ast.MappingValueNode:
		tk := n.Key.GetToken()
		if tk == nil {
			return nil, false
		}
		p := append(slices.Clip(path), tk.Value)
		if key && at(n.Key.GetToken(), line, column) {
			return p, true
		}
		return nodePath(n.Value, p, line, column, key)
	case *ast.SequenceNode:
		return nodesPath(n.Values, path, line, column, key)
	case *ast.TagNode:
		return nodePath(n.Value, path, line, column, key)
	case *ast.AnchorNode:
		return nodePath(n.Value, path, line, column, key)
	}
	return nil, false
}

// nodesPath is nodePath over the entries of a mapping or a list.
func nodesPath[N ast.Node](ns []N, path []string, line, column int, key bool) ([]string, bool) {
	for _, n := range ns {
		if p, ok := nodePath(n, path, line, column, key); ok {
			return p, true
		}
	}
	return nil, false
}

func at(tk *token.Token, line, column int) bool {
	return tk != nil && tk.Position != nil && tk.Position.Line == line && tk.Position.Column == column
}

// indentKeyPath is the dotted path of the key whose value is at
// line:column, from the indentation of the lines above (block style).
func indentKeyPath(data []byte, line, column int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	var path []string
	indent := column // the key owning the value is left of it
	for i := line - 1; i >= 0; i-- {
		l := lines[i]
		t := strings.TrimLeft(l, " ")
		in := len(l) - len(t)
		if rest, ok := strings.CutPrefix(t, "- "); ok { // a list entry's first key
			t, in = strings.TrimLeft(rest, " "), in+2+len(rest)-len(strings.TrimLeft(rest, " "))
		}
		if t == "" || strings.ContainsAny(t[:1], "#-{[") {
			continue
		}
		if in >= indent && !(i == line-1 && in < column-1) {
			continue
		}
		key, _, ok := strings.Cut(t, ":")
		if !ok {
			continue
		}
		path = append([]string{strings.Trim(strings.TrimSpace(key), `"'`)}, path...)
		indent = in
		if in == 0 {
			break
		}
	}
	return strings.Join(path, ".")
}

// typeAt is the type of the value at a dotted path of the config type t,
// through sections, map entries and the entries of lists
// (auth.tokens.sha256); "" is the file itself.
func typeAt(t reflect.Type, path string) (reflect.Type, bool) {
	if path == "" {
		return t, true
	}
	for _, part := range strings.Split(path, ".") {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t.Kind() == reflect.Map:
			t = t.Elem()
		case t.Kind() == reflect.Struct && !parsesText(t):
			f, ok := fieldByKey(t, part)
			if !ok {
				return nil, false
			}
			t = f.Type
		default:
			return nil, false
		}
	}
	return t, true
}

// fieldByKey is the field of struct t whose yaml key is name (inlined
// structs included).
func fieldByKey(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		key, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			if g, ok := fieldByKey(f.Type, name); ok {
				return g, true
			}
		} else if key == name && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// Describe says in words what a key of type t takes.
func Describe(t reflect.Type) string {
	if t == reflect.TypeOf(time.Duration(0)) || strings.HasSuffix(t.Name(), "Duration") {
		return "a duration such as 500ms, 10s, 24h or 30d"
	}
	if parsesText(t) {
		return "text"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Struct && !parsesText(e) {
			return "a list of sections (entries of keys)"
		}
		return "a list of " + strings.TrimPrefix(Describe(t.Elem()), "a ") + " values"
	case reflect.Struct, reflect.Map:
		return "a section of keys"
	}
	return "a value of another kind"
}

// fractionError finds a whole-number key given a fraction (rate: 1.5),
// which the decoder would truncate without a word.
func fractionError(data []byte, ptr any) (string, bool) {
	doc, ok := decodeDoc(data)
	if !ok {
		return "", false
	}
	for _, k := range Keys(ptr) {
		if parsesText(k.Type) {
			continue // a duration or a size parses its own text
		}
		switch k.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			continue
		}
		if f, ok := docValue(doc, k.Path).(float64); ok && f != math.Trunc(f) {
			return fmt.Sprintf("%s: want %s, got %v", k.Path, Describe(k.Type), f), true
		}
	}
	return "", false
}

// decodeDoc decodes a YAML document as plain maps and values.
func decodeDoc(data []byte) (map[string]any, bool) {
	var doc map[string]any
	return doc, yaml.Unmarshal(data, &doc) == nil
}

// parsesText says whether a key of type t parses its own text (a duration).
func parsesText(t reflect.Type) bool { return reflect.PointerTo(t).Implements(textUnmarshaler) }

// docValue is the value at a dotted path of a decoded YAML document (nil
// when absent).
func docValue(doc map[string]any, path string) any {
	var v any = doc
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// textValueError finds the key whose own parser (a duration, say) refused
// its value, which the decoder reports without a position: it names the key
// and what it takes.
func textValueError(data []byte, ptr any) (string, bool) {
	doc, ok := decodeDoc(data)
	if !ok {
		return "", false
	}
	for _, k := range Keys(ptr) {
		if !parsesText(k.Type) {
			continue
		}
		v := docValue(doc, k.Path)
		if v == nil {
			continue
		}
		s, isText := v.(string)
		if !isText {
			return fmt.Sprintf("%s: want %s, got %v", k.Path, Describe(k.Type), v), true
		}
		probe := reflect.New(k.Type).Interface().(encoding.TextUnmarshaler)
		if err := probe.UnmarshalText([]byte(s)); err != nil {
			return fmt.Sprintf("%s: %v", k.Path, err), true
		}
	}
	return "", false
}
