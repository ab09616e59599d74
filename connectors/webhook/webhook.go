// Package webhook is the webhook executor of automated response: it POSTs
// each approved action as JSON to a configured URL, the way SOAR tools take
// alerts, signed with an HMAC-SHA256 of the body and carrying the action's
// idempotency key, with retries and exponential backoff, and says how it
// ended as an outcome for the actions.results topic.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/stitch-xdr/stitch/operators/respond"
)

// Headers of every request.
const (
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body under
	// the shared secret (as GitHub signs its webhooks), present when a
	// secret is configured.
	SignatureHeader = "X-Stitch-Signature-256"
	// IdempotencyHeader is the action's idempotency key: the same for every
	// attempt and every version of one action, so a receiver acts once.
	IdempotencyHeader = "Idempotency-Key"
	// TimestampHeader is the Unix time of the attempt (signed along: the
	// signature covers "<timestamp>.<body>").
	TimestampHeader = "X-Stitch-Timestamp"
)

// Executor posts actions to one URL.
type Executor struct {
	URL    string
	Secret []byte
	// Attempts is how many times a request is tried (default 4); Backoff
	// the wait before the second, doubled each time (default 500ms).
	Attempts int
	Backoff  time.Duration
	Client   *http.Client
	// Now and Sleep are the clock (tests).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Sign is the signature header value of body sent at ts under secret.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify says whether a request's signature is right (receivers, tests).
func Verify(secret []byte, r *http.Request, body []byte) bool {
	ts, err := strconv.ParseInt(r.Header.Get(TimestampHeader), 10, 64)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(r.Header.Get(SignatureHeader)), []byte(Sign(secret, ts, body)))
}

// Execute posts an approved action and reports the outcome: succeeded on a
// 2xx answer; failed, with the reason, on a 4xx answer other than 408 and
// 429 (retrying cannot help), or when every attempt failed. Only a done ctx
// returns an error: then nothing is reported and the action is tried again
// later, under the same idempotency key.
func (e *Executor) Execute(ctx context.Context, a *respond.Action) (respond.Outcome, error) {
	out := respond.Outcome{TenantID: a.TenantID, ActionID: a.ID, Executor: "webhook"}
	if a.Status != respond.StatusApproved {
		return out, fmt.Errorf("webhook: action %s is %s, not approved", a.ID, a.Status)
	}
	body, err := json.Marshal(a)
	if err != nil {
		return out, err
	}
	attempts, backoff := e.Attempts, e.Backoff
	if attempts < 1 {
		attempts = 4
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	now, sleep, client := e.Now, e.Sleep, e.Client
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	var last string
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if err := sleep(ctx, backoff<<(i-1)); err != nil {
				return out, err
			}
		}
		status, msg, err := e.post(ctx, client, now(), a.IdempotencyKey, body)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		switch {
		case err != nil:
			last = err.Error()
			continue
		case status >= 200 && status < 300:
			out.Status, out.Time = respond.StatusSucceeded, now().UTC()
			return out, nil
		case status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			out.Status, out.Error, out.Time = respond.StatusFailed, fmt.Sprintf("HTTP %d: %s", status, msg), now().UTC()
			return out, nil
		default:
			last = fmt.Sprintf("HTTP %d: %s", status, msg)
		}
	}
	out.Status, out.Time = respond.StatusFailed, now().UTC()
	out.Error = fmt.Sprintf("%d attempts failed; the last: %s", attempts, last)
	return out, nil
}

func (e *Executor) post(ctx context.Context, client *http.Client, at time.Time, key string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	ts := at.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IdempotencyHeader, key)
	req.Header.Set(TimestampHeader, strconv.FormatInt(ts, 10))
	if len(e.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(e.Secret, ts, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(bytes.TrimSpace(msg)), nil
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
