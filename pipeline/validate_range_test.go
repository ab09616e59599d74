package pipeline

import (
	"strings"
	"testing"
)

// A value out of range is refused with its key, the value and the range.
func TestValidateNamesKeyValueAndRange(t *testing.T) {
	c := Default()
	c.State.CacheBytes = -1
	c.Hunting.RollAge = 0
	c.Correlate.Grace = Duration(-1)
	err := c.Validate()
	for _, want := range []string{
		"state.cache_bytes: -1 is out of range: must be at least 0",
		"hunting.roll_age: 0s is out of range: must be more than 0s",
		"correlate.grace: -1ns is out of range: must be 0s or more",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
	d := Default()
	if err := d.Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
}
