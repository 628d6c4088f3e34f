package httpbreaker

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Outcome is what a finished request means to its breaker.
type Outcome uint8

// The outcomes a Classifier returns. Any other value counts as Failure.
const (
	Success         Outcome = iota // counts towards closing, and against the failure rate
	Failure                        // counts towards opening
	Excluded                       // counts nowhere: the call tells nothing of what it went through
	UpstreamFailure                // an upstream's failure (Call.Upstream), counted apart, in no window
)

var outcomeNames = [...]string{Success: "success", Failure: "failure", Excluded: "excluded", UpstreamFailure: "upstream_failure"}

// String returns "success", "failure", "excluded" or "upstream_failure".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Call is what a Classifier knows of an admitted call once it has ended:
// a request whose handler returned or panicked (the server side), a
// RoundTrip that returned (the client side), or Do's func.
type Call struct {
	Key     string        // the breaker's key
	Request *http.Request // nil for Do; its context tells whether the client, or the caller, is still there
	// StatusCode is the final status: the first non-1xx code the handler
	// wrote (200 for a body without one, 0 for none), or the response's.
	StatusCode int
	Err        error // the client side's RoundTrip error, or Do's func's
	// Upstream is, on the server side, the key of an upstream whose call of
	// the request's had failed or been rejected, and not been retried with
	// success, when the handler wrote its status; "" if none.
	Upstream   string
	ClientGone bool          // the client, or the caller, had canceled the request's context
	Hijacked   bool          // the handler took the connection over
	Panic      any           // what the handler panicked with; the panic goes on
	RetryAfter time.Duration // the Retry-After sent with a 429 or 503
	Duration   time.Duration // how long it ran, measured with SlowCall or WithClassifier
	Slow       bool          // Duration exceeded SlowCall

	// slowApart says the policy sets SlowCallRate.
	slowApart bool
}

// A Classifier decides what a finished request means to its breaker.
type Classifier func(Call) Outcome

// DefaultClassifier is the rule a Breakers uses unless WithClassifier
// replaces it, on both sides: a panic, a transport error, a status of 500
// or more, a 429 and a call slower than SlowCall (unless SlowCallRate judges
// slowness apart) fail; a client that went away before a failure was
// answered, a hijacked connection with no status and ReverseProxy's
// ErrAbortHandler after the client left are excluded; anything else, 4xx
// included, succeeds. A gateway answer (502, 503, 504 or 429) while
// Call.Upstream names an upstream is that upstream's: an UpstreamFailure.
// docs/configuration.md gives the table, and classifiers that blame more
// or less.
func DefaultClassifier(c Call) Outcome {
	o := ownOutcome(c)
	if o == Failure && c.Upstream != "" && c.Panic == nil && gatewayStatus(c.StatusCode) {
		return UpstreamFailure
	}
	return o
}

// ownOutcome is DefaultClassifier without blame.
func ownOutcome(c Call) Outcome {
	switch {
	case c.Panic != nil:
		if c.Panic == http.ErrAbortHandler && c.Request != nil && c.Request.Context().Err() == context.Canceled {
			return Excluded
		}
		return Failure
	case c.Slow && !c.slowApart:
		return Failure
	case c.Hijacked && c.StatusCode == 0:
		return Excluded
	case c.ClientGone && (c.StatusCode == 0 || failureStatus(c.StatusCode)):
		return Excluded
	case c.Err != nil:
		return Failure
	case failureStatus(c.StatusCode):
		return Failure
	}
	return Success
}

// judging is how a breaker judges its calls: with its classifier (nil:
// DefaultClassifier) and its policy's SlowCall and SlowCallRate.
type judging struct {
	classify  Classifier
	slowCall  time.Duration // 0: off
	slowApart bool          // SlowCallRate is set: slowness is judged apart from the outcome
}

// timed reports whether calls need their duration: for SlowCall, or for a
// classifier, which may read it.
func (j judging) timed() bool { return j.slowCall > 0 || j.classify != nil }

// judge returns what the finished call c means, on either side: the
// outcome the classifier gives it, with the delay an upstream asked for,
// and whether it was slow, when slowness is judged apart. took is how long
// the call ran, measured only when timed says so; judge sets c's duration
// and slowness from it.
func (j judging) judge(c *Call, took time.Duration) verdict {
	if j.timed() {
		c.Duration = took
		c.Slow = j.slowCall > 0 && took > j.slowCall
		c.slowApart = j.slowApart
	}
	var o Outcome
	if j.classify != nil {
		o = validOutcome(j.classify(*c))
	} else {
		o = DefaultClassifier(*c)
	}
	v := verdict{outcome: o, retryAfter: c.RetryAfter, rateLimited: c.StatusCode == http.StatusTooManyRequests,
		slow: c.Slow && c.slowApart && o != Excluded && o != UpstreamFailure}
	if o == UpstreamFailure {
		v.outcome, v.blamed = Excluded, true
	}
	return v
}

// callerGone reports whether whoever made r has given up on it: the client
// hung up, or the caller canceled its context.
func callerGone(r *http.Request) bool { return r.Context().Err() == context.Canceled }

// verdict is how an admitted call ended, as its side saw it.
type verdict struct {
	outcome Outcome
	// retryAfter is the delay an upstream asked for with a failure (its
	// Retry-After), 0 if none; rateLimited says it came with an answer that
	// this caller is over its rate limit (a 429), rather than that the
	// upstream is unavailable (a 503). The policy's UpstreamRetryAfter says
	// which of them may keep the breaker open.
	retryAfter  time.Duration
	rateLimited bool
	// slow says the call was slow, with SlowCallRate: slowness is judged
	// apart from the outcome.
	slow bool
	// blamed says the classifier blamed the failure on an upstream
	// (UpstreamFailure): outcome is Excluded, which is what it is to the
	// breaker's window and probes, and it is counted as upstream_failure.
	blamed bool
}

// failureStatus reports whether an answer with this status is a failure of
// whoever gave it: 500 and above, and 429.
func failureStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests
}

// gatewayStatus reports whether an answer with this status says that the
// answer was not the server's to give: a gateway's (502, 503, 504), or a
// rate limit (429), which a handler passes on from its upstream.
func gatewayStatus(code int) bool {
	switch code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// failureRate returns failures / (failures + successes), or 0 when both
// are 0.
func failureRate(failures, successes uint32) float64 {
	if n := failures + successes; n > 0 {
		return float64(failures) / float64(n)
	}
	return 0
}

// validOutcome returns o, or Failure if o is none of the outcomes.
func validOutcome(o Outcome) Outcome {
	if o > UpstreamFailure {
		return Failure
	}
	return o
}
