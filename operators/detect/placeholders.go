package detect

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// The expand modifier replaces %name% placeholders in a value with values
// that belong to the environment, not the rule (%Administrators%,
// %DomainControllers%, %Workstations%): each placeholder becomes each of its
// values, a value with several placeholders every combination, and the
// variants are alternatives (Sigma's value_placeholders). The values are
// configured beside the rules, in a file named placeholders.yml (or .yaml)
// under any rules path:
//
//	placeholders:
//	  Administrators: [admin, 'adm-*']
//	  DomainControllers: ['dc*.corp.local']
//
// Values may hold the wildcards * and ?. A placeholder with no values makes
// the rule unsupported, never a rule that silently matches nothing. A \%
// is a plain percent sign; write a backslash before a placeholder as \\
// (%Domain%\\%Admins%).

// PlaceholderFile is the base name of placeholder files (.yml or .yaml).
const PlaceholderFile = "placeholders"

func isPlaceholderFile(name string) bool {
	base := strings.ToLower(filepath.Base(name))
	return base == PlaceholderFile+".yml" || base == PlaceholderFile+".yaml"
}

// addPlaceholders reads one placeholder file into the set; a problem names
// the file and line.
func (s *Set) addPlaceholders(file string, data []byte) {
	var doc struct {
		Placeholders map[string]yaml.Node `yaml:"placeholders"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 1
		if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
			fmt.Sscan(m[1], &line)
		}
		s.Problems = append(s.Problems, Problem{File: file, Line: line, Reason: "placeholders: " + err.Error()})
		return
	}
	if s.Placeholders == nil {
		s.Placeholders = map[string][]string{}
	}
	names := make([]string, 0, len(doc.Placeholders))
	for n := range doc.Placeholders {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		n := doc.Placeholders[name]
		var vals []string
		switch n.Kind {
		case yaml.ScalarNode:
			vals = []string{n.Value}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					s.Problems = append(s.Problems, Problem{File: file, Line: c.Line, Reason: fmt.Sprintf("placeholder %s: values are strings", name)})
					continue
				}
				vals = append(vals, c.Value)
			}
		default:
			s.Problems = append(s.Problems, Problem{File: file, Line: n.Line, Reason: fmt.Sprintf("placeholder %s: want a value or a list of values", name)})
			continue
		}
		s.Placeholders[name] = append(s.Placeholders[name], vals...)
	}
}

// expandValues replaces the placeholders of each string value with every
// combination of their values.
func expandValues(values []any, placeholders map[string][]string) ([]any, error) {
	var out []any
	for _, v := range values {
		str, ok := v.(string)
		if !ok {
			out = append(out, v)
			continue
		}
		variants, err := expandOne(str, placeholders)
		if err != nil {
			return nil, err
		}
		if len(out)+len(variants) > 4096 {
			return nil, fmt.Errorf("expand: more than 4096 variants")
		}
		for _, x := range variants {
			out = append(out, x)
		}
	}
	return out, nil
}

func expandOne(s string, placeholders map[string][]string) ([]string, error) {
	variants := []string{""}
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '\\':
			// an escaped backslash, kept for the value's own unescaping
			for k := range variants {
				variants[k] += `\\`
			}
			i += 2
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '%':
			for k := range variants {
				variants[k] += "%"
			}
			i += 2
		case s[i] == '%':
			end := strings.IndexByte(s[i+1:], '%')
			if end < 0 {
				return nil, fmt.Errorf("expand: %q opens a placeholder it does not close", s)
			}
			name := s[i+1 : i+1+end]
			vals, ok := placeholders[name]
			if !ok || len(vals) == 0 {
				return nil, unsupportedError{fmt.Sprintf("modifier expand: placeholder %%%s%% has no values (define it in %s.yml beside the rules)", name, PlaceholderFile)}
			}
			next := make([]string, 0, len(variants)*len(vals))
			for _, v := range variants {
				for _, x := range vals {
					next = append(next, v+x)
				}
			}
			if len(next) > 4096 {
				return nil, fmt.Errorf("expand: %q expands into more than 4096 variants", s)
			}
			variants = next
			i += end + 2
		default:
			for k := range variants {
				variants[k] += s[i : i+1]
			}
			i++
		}
	}
	return variants, nil
}
