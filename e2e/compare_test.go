package e2e

import (
	"strings"
	"testing"
)

// The crash test's failure of about 1 run in 10 (an alert placed before its
// evidence, with a commit between them, opens an incident that its
// evidence then redirects) is an arrival-order difference, not a lost or
// repeated version; every other difference in the incidents still fails.
func TestIncidentDiffsAcceptOnlyArrivalOrderRedirects(t *testing.T) {
	live := "active→ [aa220976124311416905_-1543647506 ed058771643156479920_-3069156521]"
	base := map[string]string{"inc-b0b27567992894d879aa": live, "inc-other": "active→ [x]"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	redirect := map[string]string{"inc-bc45ad587675d6bf2916": "redirected→inc-b0b27567992894d879aa []"}
	for _, c := range []struct {
		name      string
		want, got map[string]string
		errs      string // a substring of the errors, "" for none
	}{
		{"the crash run's extra redirect (e2e log of 971801b)", base, with(redirect), ""},
		{"the uninterrupted run's extra redirect", with(redirect), base, ""},
		{"the same", base, base, ""},
		{"a redirect into an incident whose alerts differ", base,
			with(map[string]string{"inc-bc45ad587675d6bf2916": "redirected→inc-b0b27567992894d879aa []",
				"inc-b0b27567992894d879aa": "active→ [aa220976124311416905_-1543647506]"}), "inc-b0b27567992894d879aa:"},
		{"a redirect into an incident one run lacks", base,
			with(map[string]string{"inc-bc45ad587675d6bf2916": "redirected→inc-gone []"}), "extra incident inc-bc45ad587675d6bf2916"},
		{"a redirect into a redirected incident", with(map[string]string{"inc-r": "redirected→inc-other []"}),
			with(map[string]string{"inc-r": "redirected→inc-other []", "inc-bc45ad587675d6bf2916": "redirected→inc-r []"}), "extra incident inc-bc45ad587675d6bf2916"},
		{"a redirected incident with alerts", base,
			with(map[string]string{"inc-bc45ad587675d6bf2916": "redirected→inc-b0b27567992894d879aa [y]"}), "extra incident inc-bc45ad587675d6bf2916"},
		{"an extra live incident", base, with(map[string]string{"inc-new": "active→ [y]"}), "extra incident inc-new"},
		{"a missing live incident", base, with(map[string]string{"inc-other": ""}), "incident inc-other missing"},
	} {
		errs, notes := incidentDiffs(c.want, c.got)
		all := strings.Join(errs, "\n")
		switch {
		case c.errs == "" && len(errs) > 0:
			t.Errorf("%s: errors %v", c.name, errs)
		case c.errs != "" && !strings.Contains(all, c.errs):
			t.Errorf("%s: errors %q, want one with %q", c.name, all, c.errs)
		case c.errs == "" && len(c.want) != len(c.got) && len(notes) != 1:
			t.Errorf("%s: notes %v, want the redirect noted", c.name, notes)
		}
	}
}
