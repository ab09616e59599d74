package execute

import (
	"fmt"
	"testing"
	"time"
)

// Sent work is looked at after Interval, then twice as long each time, at
// most MaxInterval apart, until Timeout after it was sent.
func TestExecuteFollowBacksOffUntilTheTimeout(t *testing.T) {
	f := Follow{Interval: time.Second, MaxInterval: 5 * time.Second, Timeout: time.Hour}
	var waits []time.Duration
	for n := range 6 {
		waits = append(waits, f.Wait(n))
	}
	if got := fmt.Sprint(waits); got != "[1s 2s 4s 5s 5s 5s]" {
		t.Fatalf("waits %s", got)
	}
	sent := time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)
	if f.Expired(sent, sent.Add(59*time.Minute)) || !f.Expired(sent, sent.Add(time.Hour)) {
		t.Fatal("expiry")
	}
	var zero Follow
	if zero.Wait(0) != DefaultFollowInterval || zero.Wait(100) != DefaultFollowMaxInterval || zero.TimeoutOf() != DefaultFollowTimeout {
		t.Fatalf("defaults: %v %v %v", zero.Wait(0), zero.Wait(100), zero.TimeoutOf())
	}
}
