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
	// Success counts towards closing, and against the failure rate.
	Success Outcome = iota
	// Failure counts towards opening.
	Failure
	// Excluded counts nowhere: the request tells nothing about the handler.
	Excluded
	// UpstreamFailure is a failure that an upstream caused (Call.Upstream
	// names it): counted apart, as requests_total's result
	// "upstream_failure" and Status.Totals.UpstreamFailure, and, like
	// Excluded, neither towards opening nor towards closing. The upstream's
	// own breaker has counted the failure already.
	UpstreamFailure
)

var outcomeNames = [...]string{Success: "success", Failure: "failure", Excluded: "excluded", UpstreamFailure: "upstream_failure"}

// String returns "success", "failure", "excluded" or "upstream_failure".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Call is what a Classifier knows about an admitted call once it has
// ended: on the server side, a request whose handler has returned or
// panicked; on the client side (Transport), a request whose RoundTrip has
// returned; for Do, a func that has returned.
type Call struct {
	// Key is the breaker's key.
	Key string
	// Request is the request. Its context tells whether the client (on the
	// client side, the caller) is still there. It is nil for Do.
	Request *http.Request
	// StatusCode is the final HTTP status: on the server side the status the handler
	// wrote (the first non-1xx code, 200 if it wrote a body, flushed or
	// called ReadFrom first, and 0 if it wrote nothing, when net/http sends
	// 200, or hijacked the connection before writing one); on the client
	// side the response's status, 0 when RoundTrip returned an error.
	StatusCode int
	// Err is the error the client side's RoundTrip returned (connection
	// refused, a deadline exceeded, the caller's context canceled), or the
	// error Do's func returned; always nil on the server side.
	Err error
	// Upstream is, on the server side, the key of an upstream of the same
	// Breakers whose call, made with the request's context, had failed or
	// been rejected when the handler wrote its status, and had not been
	// retried with success since; of several, the one that failed last; ""
	// if none. DefaultClassifier blames only a gateway answer on it.
	Upstream string
	// ClientGone reports whether the client had gone away (the request's
	// context was canceled) when the handler wrote StatusCode, or, if it wrote
	// none, when it returned. On the client side it reports that the call
	// ended in an error once the caller had canceled the request's context,
	// whatever the error (net/http may return the context's cause).
	ClientGone bool
	// Hijacked reports whether the handler took the connection over.
	Hijacked bool
	// Panic is the value the handler panicked with, nil if it did not. The
	// panic goes on up the stack after the breaker has recorded it.
	Panic any
	// RetryAfter is the delay in the Retry-After header that came with a 429
	// or 503 status, as seconds or an HTTP date; 0 when there was none. A
	// failure that carries one keeps the breaker open at least that long
	// once it trips (up to MaxOpenFor), if the policy's UpstreamRetryAfter
	// honours its status (by default a 503's, not a 429's), and the reject
	// response passes the longer delay on.
	RetryAfter time.Duration
	// Duration is how long the handler ran. It is measured only when the
	// policy sets SlowCall or WithClassifier is used; otherwise it is 0.
	Duration time.Duration
	// Slow reports whether Duration exceeded the policy's SlowCall. With
	// the policy's SlowCallRate set, a slow call is counted as slow whatever
	// the classifier returns, and DefaultClassifier does not make it a
	// failure for being slow.
	Slow bool

	// slowApart says the policy sets SlowCallRate.
	slowApart bool
}

// A Classifier decides what a finished request means to its breaker.
type Classifier func(Call) Outcome

// DefaultClassifier is the rule a Breakers uses unless WithClassifier
// replaces it, on the server and the client side alike:
//
//   - a panic is a Failure, except http.ErrAbortHandler once the client has
//     gone, which is how httputil.ReverseProxy ends a response that the
//     client stopped reading: Excluded;
//   - a slow call (over SlowCall) is a Failure, unless the policy sets
//     SlowCallRate, which judges slowness apart;
//   - a hijacked connection that never wrote a status is Excluded;
//   - a client that went away before a failure status was written (or
//     before the handler returned without writing one) makes it Excluded;
//     on the client side, so does a call that ended in an error once the
//     caller had canceled its context, whatever the error: the caller gave
//     up, the upstream did nothing wrong;
//   - any other transport error (connection refused, reset, a TLS failure,
//     a deadline exceeded: a slow upstream) is a Failure;
//   - status 500 and above, and 429, is a Failure;
//   - anything else, 4xx included, is a Success;
//   - and a Failure that is a gateway answer (502, 503, 504, or 429) while
//     Call.Upstream names an upstream is an UpstreamFailure: the handler
//     passed that upstream's failure on. Any other failure (a 500, a panic)
//     is the handler's own.
//
// A call whose context was already done when its breaker admitted it is
// excluded before any classifier is asked. A classifier can blame more (a
// proxy that passes its upstream's 500 on) or less:
//
//	httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
//		o := httpbreaker.DefaultClassifier(c)
//		if c.Key == "proxy" && o == httpbreaker.Failure && c.Upstream != "" && c.Panic == nil {
//			return httpbreaker.UpstreamFailure
//		}
//		return o
//	})
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
