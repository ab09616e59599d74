package main

import (
	"encoding/json"
	"io"
	"sort"
	"strings"
	"time"
)

// What the list commands (incidents, actions) share.

// commaSet is the set of the comma-separated values of s (empty: none).
func commaSet(s string) map[string]bool {
	set := map[string]bool{}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			set[v] = true
		}
	}
	return set
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
