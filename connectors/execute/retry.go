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
	attempts, backoff, now, sleep := r.Attempts, r.Backoff, r.Now, r.Sleep
	if attempts < 1 {
		attempts = 4
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	var last string
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if err := sleep(ctx, backoff<<(i-1)); err != nil {
				return out, err
			}
		}
		ans := try(ctx, now())
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		switch {
		case ans.Err != nil:
			last = ans.Err.Error()
			continue
		case ans.Done || ans.Status >= 200 && ans.Status < 300:
			out.Status, out.Time = respond.StatusSucceeded, now().UTC()
			return out, nil
		case Permanent(ans.Status):
			out.Status, out.Error, out.Time = respond.StatusFailed, fmt.Sprintf("HTTP %d: %s", ans.Status, ans.Msg), now().UTC()
			return out, nil
		default:
			last = fmt.Sprintf("HTTP %d: %s", ans.Status, ans.Msg)
		}
	}
	out.Status, out.Time = respond.StatusFailed, now().UTC()
	out.Error = fmt.Sprintf("%d attempts failed; the last: %s", attempts, last)
	return out, nil
}

// Failed is the outcome of an action that no call can carry out (a target
// the service cannot address), with the reason.
func (r Retry) Failed(executor string, a *respond.Action, reason string) respond.Outcome {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	return respond.Outcome{TenantID: a.TenantID, ActionID: a.ID, Executor: executor,
		Status: respond.StatusFailed, Error: reason, Time: now().UTC()}
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
