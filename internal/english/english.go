// Package english writes counts of things in messages a user reads: "1
// incident", "2 incidents", never "1 incidents".
package english

import (
	"strconv"
	"strings"
)

// Count is n and the noun, singular for exactly one and plural otherwise
// ("0 rows"). The plural is the regular English one of the last word ("dead
// letter" → "dead letters", "match" → "matches", "query" → "queries"),
// or plural[0] where the noun has another.
func Count[N ~int | ~int32 | ~int64 | ~uint64](n N, noun string, plural ...string) string {
	s := strconv.FormatInt(int64(n), 10) + " "
	if n == 1 {
		return s + noun
	}
	if len(plural) > 0 {
		return s + plural[0]
	}
	return s + Plural(noun)
}

// Plural is the regular English plural of noun's last word.
func Plural(noun string) string {
	lower := strings.ToLower(noun)
	switch {
	case strings.HasSuffix(lower, "s"), strings.HasSuffix(lower, "x"), strings.HasSuffix(lower, "z"),
		strings.HasSuffix(lower, "ch"), strings.HasSuffix(lower, "sh"):
		return noun + "es"
	case len(lower) > 1 && strings.HasSuffix(lower, "y") && !strings.ContainsRune("aeiou", rune(lower[len(lower)-2])):
		return noun[:len(noun)-1] + "ies"
	}
	return noun + "s"
}
