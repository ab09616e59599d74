package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// What the list commands (incidents, actions) share.

// statusSet is the set of the comma-separated statuses of s (empty: none),
// each one of allowed (in any case); another is a usage error naming them.
func statusSet(s string, allowed ...string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		i := slices.IndexFunc(allowed, func(a string) bool { return strings.EqualFold(a, v) })
		if i < 0 {
			return nil, fmt.Errorf("%w: --status %q is not one of %s", errUsage, v, strings.Join(allowed, ", "))
		}
		set[allowed[i]] = true
	}
	return set, nil
}

// newestFirst sorts list by last update, newest first, then by id.
func newestFirst[T any](list []T, key func(T) (updated time.Time, id string)) {
	sort.Slice(list, func(i, j int) bool {
		ti, idi := key(list[i])
		tj, idj := key(list[j])
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return idi < idj
	})
}

// writeJSONLines writes each item as one line of JSON.
func writeJSONLines[T any](w io.Writer, list []T) error {
	enc := json.NewEncoder(w)
	for _, v := range list {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
