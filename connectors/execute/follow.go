package execute

import (
	"time"

	"github.com/stitch-xdr/stitch/operators/respond"
)

// Some calls do not carry an action out but start work that ends later: a
// Defender for Endpoint machine action (isolate, scan, quarantine, ...) is
// accepted at once (HTTP 201) and then runs on the device for seconds or,
// for a device that is offline, for days. Such an action is reported sent,
// with the id the service gave the work (Report.ExternalID), and followed:
// the executor looks at the work again with backoff (Follow) until it ends
// or the timeout passes, and only then reports succeeded or failed. What an
// executor must keep to follow an action across restarts is a Pending.

// Report is an outcome for topics.action_results plus, for a sent action,
// the id of the work the service took on (a Defender machine action id),
// so that whoever reads the results can look it up too. Consumers that
// know only respond.Outcome read the same record without it.
type Report struct {
	respond.Outcome
	ExternalID string `json:"externalId,omitempty"`
}

// Final says whether the report ends the action (succeeded or failed).
func (r Report) Final() bool {
	return r.Status == respond.StatusSucceeded || r.Status == respond.StatusFailed
}

// Pending is a sent action whose work is followed: what an executor keeps,
// committed together with the sent outcome, so that a restarted executor
// looks at the same work again instead of starting it a second time.
type Pending struct {
	TenantID       string    `json:"tenantId"`
	ActionID       string    `json:"actionId"`
	Type           string    `json:"type"`
	IdempotencyKey string    `json:"idempotencyKey,omitempty"`
	ExternalID     string    `json:"externalId"`
	Sent           time.Time `json:"sent"` // when the service took the work on (wall clock)
	// Status is the service's status of the work when last seen
	// (Pending, InProgress for a machine action).
	Status string `json:"status,omitempty"`
}

// PendingOf is the pending work of action a that a sent report names.
func PendingOf(a *respond.Action, r Report) Pending {
	return Pending{TenantID: a.TenantID, ActionID: a.ID, Type: a.Type, IdempotencyKey: a.IdempotencyKey,
		ExternalID: r.ExternalID, Sent: r.Time}
}

// Follow is the policy of looking at sent work again.
type Follow struct {
	// Interval is the wait before the first look (default 5s), doubled
	// after each look up to MaxInterval (default 1m).
	Interval, MaxInterval time.Duration
	// Timeout is how long after it was sent work may stay unfinished
	// before the action is reported failed (default 24h).
	Timeout time.Duration
}

// Defaults of Follow.
const (
	DefaultFollowInterval    = 5 * time.Second
	DefaultFollowMaxInterval = time.Minute
	DefaultFollowTimeout     = 24 * time.Hour
)

func (f Follow) norm() Follow {
	if f.Interval <= 0 {
		f.Interval = DefaultFollowInterval
	}
	if f.MaxInterval <= 0 {
		f.MaxInterval = DefaultFollowMaxInterval
	}
	if f.MaxInterval < f.Interval {
		f.MaxInterval = f.Interval
	}
	if f.Timeout <= 0 {
		f.Timeout = DefaultFollowTimeout
	}
	return f
}

// Wait is how long to wait before look number n+1 at work looked at n
// times: Interval, doubled after each look, at most MaxInterval.
func (f Follow) Wait(n int) time.Duration {
	f = f.norm()
	d := f.Interval
	for i := 0; i < n && d < f.MaxInterval; i++ {
		d *= 2
	}
	return min(d, f.MaxInterval)
}

// Expired says whether work sent at sent is still unfinished past the
// timeout at now.
func (f Follow) Expired(sent, now time.Time) bool {
	return now.Sub(sent) >= f.norm().Timeout
}

// TimeoutOf is the timeout in force (Timeout or its default).
func (f Follow) TimeoutOf() time.Duration { return f.norm().Timeout }
