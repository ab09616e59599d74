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
	"net/http"
	"strconv"
	"time"

	"github.com/stitch-xdr/stitch/connectors/execute"
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
	Client *http.Client
	// Retry is the policy of the calls: attempts (default 4), backoff
	// (default 500ms, doubled each time) and the clock.
	Retry execute.Retry
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

// Execute posts an approved action and reports the outcome (see
// execute.Retry.Do: 2xx succeeds, another 4xx than 408 and 429 fails at
// once, the rest is retried). Only a done ctx returns an error: then
// nothing is reported and the action is tried again later, under the same
// idempotency key.
func (e *Executor) Execute(ctx context.Context, a *respond.Action) (respond.Outcome, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return respond.Outcome{}, err
	}
	client := execute.Client(e.Client)
	return e.Retry.Do(ctx, "webhook", a, func(ctx context.Context, at time.Time) execute.Answer {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
		if err != nil {
			return execute.Answer{Err: err}
		}
		ts := at.Unix()
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(IdempotencyHeader, a.IdempotencyKey)
		req.Header.Set(TimestampHeader, strconv.FormatInt(ts, 10))
		if len(e.Secret) > 0 {
			req.Header.Set(SignatureHeader, Sign(e.Secret, ts, body))
		}
		return execute.Send(client, req)
	})
}
