// Package execute is what every executor of automated response shares: an
// approved action is carried out by HTTP calls that are retried with
// exponential backoff, and ends as an outcome for topics.action_results
// (succeeded, or failed with the reason). The executors themselves
// (connectors/webhook, connectors/microsoft) only say how one attempt is
// made.
package execute

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/operators/respond"
)

// Retry is the policy of an executor's calls.
type Retry struct {
	// Attempts is how many times a call is tried (default 4); Backoff the
	// wait before the second, doubled each time (default 500ms).
	Attempts int
	Backoff  time.Duration
	// Now and Sleep are the clock (tests).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Answer is how one attempt ended: an HTTP status and the start of the
// answer's body, or Err when no answer came (network, timeout). Done says
// the action is carried out whatever the status (the service answered that
// the same request is already in progress).
type Answer struct {
	Status int
	Msg    string
	Err    error
	Done   bool
}

// Attempt makes one try at an action.
type Attempt func(ctx context.Context, at time.Time) Answer

// Do carries out an approved action: succeeded on a 2xx answer (or Done);
// failed, with the reason, on a 4xx answer other than 408 and 429
// (retrying cannot help), or when every attempt failed. Only a done ctx
// returns an error: then nothing is reported and the action is tried again
// later, under the same idempotency key.
func (r Retry) Do(ctx context.Context, executor string, a *respond.Action, try Attempt) (respond.Outcome, error) {
	out := respond.Outcome{TenantID: a.TenantID, ActionID: a.ID, Executor: executor}
	if a.Status != respond.StatusApproved {
		return out, fmt.Errorf("%s: action %s is %s, not approved", executor, a.ID, a.Status)
	}
	ans, err := r.Try(ctx, try)
	if err != nil {
		return out, err
	}
	out.Time = r.now().UTC()
	switch {
	case ans.OK():
		out.Status = respond.StatusSucceeded
	case ans.Err == nil && Permanent(ans.Status):
		out.Status, out.Error = respond.StatusFailed, ans.Reason()
	default:
		out.Status = respond.StatusFailed
		out.Error = fmt.Sprintf("%d attempts failed; the last: %s", r.attempts(), ans.Reason())
	}
	return out, nil
}

// Try makes attempts with backoff until one succeeds (a 2xx answer, or
// Done) or fails for good (a 4xx other than 408 and 429), or the attempts
// run out, and returns the last answer. Only a done ctx is an error.
func (r Retry) Try(ctx context.Context, try Attempt) (Answer, error) {
	attempts, backoff, sleep := r.attempts(), r.Backoff, r.Sleep
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	var ans Answer
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if err := sleep(ctx, backoff<<(i-1)); err != nil {
				return ans, err
			}
		}
		ans = try(ctx, r.now())
		if ctx.Err() != nil {
			return ans, ctx.Err()
		}
		if ans.OK() || ans.Err == nil && Permanent(ans.Status) {
			return ans, nil
		}
	}
	return ans, nil
}

// OK says whether the answer carried the call out: a 2xx, or Done.
func (a Answer) OK() bool { return a.Err == nil && (a.Done || a.Status >= 200 && a.Status < 300) }

// Reason is the answer in words: the error, or the status and the start of
// the body.
func (a Answer) Reason() string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return fmt.Sprintf("HTTP %d: %s", a.Status, a.Msg)
}

func (r Retry) attempts() int {
	if r.Attempts < 1 {
		return 4
	}
	return r.Attempts
}

func (r Retry) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// Wait sleeps d under ctx with the policy's clock (Sleep, for tests).
func (r Retry) Wait(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return sleepCtx(ctx, d)
}

// Failed is the outcome of an action that no call can carry out (a target
// the service cannot address), with the reason.
func (r Retry) Failed(executor string, a *respond.Action, reason string) respond.Outcome {
	return respond.Outcome{TenantID: a.TenantID, ActionID: a.ID, Executor: executor,
		Status: respond.StatusFailed, Error: reason, Time: r.now().UTC()}
}

// Permanent says whether an HTTP status means that trying again cannot
// help: a 4xx other than 408 (timeout) and 429 (throttled).
func Permanent(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// Send makes one request and reads the start of its answer (at most 512
// bytes, enough for an error's reason).
func Send(client *http.Client, req *http.Request) Answer {
	resp, err := client.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return Answer{Status: resp.StatusCode, Msg: strings.TrimSpace(string(msg))}
}

// Client is c, or an HTTP client with a 30 s timeout.
func Client(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
