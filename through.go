package httpbreaker

import (
	"context"
	"time"
)

// passage is one call on its way through a breaker, as the side that makes
// it (the middleware, a transport, Do) puts it: what to do with the call
// for each of the breaker's decisions, and what the call meant once it
// ended. The functions are the side's; through decides which of them run,
// and records how an admitted call ended. They are closures over the
// side's own variables, which through does not keep, so that a passage
// lives on its side's stack and putting a call through allocates nothing.
type passage struct {
	// pass runs the call untracked: the breaker does not track it (its mode
	// is disabled, or it only observes and would have rejected the call).
	pass func()
	// reject answers the call without running it.
	reject func(Rejection)
	// run runs the admitted call; pr is the half-open probe it is, nil if
	// it is none.
	run func(pr *probe)
	// judge says what the admitted call meant, once it ended as e says.
	judge func(e ending) verdict
}

// ending is how an admitted call ended: run returned, or it panicked
// (panicked is the value), or neither, when it ended its goroutine with
// runtime.Goexit.
type ending struct {
	returned bool
	panicked any
	// took is how long the call ran, measured only when the breaker's
	// judging is timed; at is when it ended (ns since the set's epoch).
	took time.Duration
	at   int64
}

// goexit reports whether the call ended its goroutine with runtime.Goexit.
func (e ending) goexit() bool { return !e.returned && e.panicked == nil }

// through puts one call through br, on any side: it asks the breaker to
// admit the call, and as the breaker decides, runs it untracked, answers
// it without running it, or runs it and records how it ended.
func (br *breaker) through(p *passage) {
	switch t, a := br.admit(); a.decision {
	case admitCall:
		br.runAdmitted(t, p)
	case passCall:
		p.pass()
	default:
		p.reject(a.rejection(br.key))
	}
}

// runAdmitted runs the call of p that br admitted with t, and records how
// it ended, in one place however it ends: when run returns; when it panics,
// after which the panic goes on from inside the call's own unwinding, so
// that whoever recovers it further up sees the stack where it happened;
// and when it ends its goroutine with runtime.Goexit.
func (br *breaker) runAdmitted(t ticket, p *passage) {
	var start int64
	if br.judging.timed() {
		start = br.clock.now()
	}
	returned := false
	defer func() {
		e := ending{returned: returned}
		if !returned {
			e.panicked = recover() // nil for a Goexit
		}
		e.at = br.clock.now()
		if br.judging.timed() {
			e.took = time.Duration(e.at - start)
		}
		br.done(t, p.judge(e), e.at)
		if e.panicked != nil {
			panic(e.panicked)
		}
	}()
	p.run(t.probe)
	returned = true
}

// callThrough puts a client call (a Transport's, a KeyedTransport's, Do's)
// through br, of set: call makes it, with ctx, and describes how it went;
// rejected answers it when the breaker rejects it. A panic or a Goexit is a
// failure, and goes on.
//
// A call whose context was already done when the breaker admitted it (a
// deadline spent before the call, a caller that had given up) is excluded,
// whatever it returned, without asking the classifier: the dependency
// never had a chance to answer, and a healthy one must not trip for it.
//
// A call made within a route group's request, with its context, tells the
// request's scope how it went (blame.go), an untracked call too: the
// upstream's failure all the same.
func callThrough(set *Breakers, br *breaker, ctx context.Context, call func() Call, rejected func(Rejection)) {
	sc := set.scopeOf(ctx)
	since := sc.calling(set, br)
	var c Call
	spent := false
	br.through(&passage{
		pass: func() {
			spent = ctx.Err() != nil
			c = call()
			if sc != nil && !spent {
				sc.called(set, br, br.judging.judge(c, 0), since)
			}
		},
		reject: func(rj Rejection) {
			rejected(rj)
			sc.called(set, br, verdict{outcome: Failure}, since)
		},
		run: func(*probe) {
			spent = ctx.Err() != nil
			c = call()
		},
		judge: func(e ending) verdict {
			var v verdict
			switch {
			case !e.returned:
				v.outcome = Failure
			case spent:
				v.outcome = Excluded
			default:
				v = br.judging.judge(c, e.took)
			}
			sc.called(set, br, v, since)
			return v
		},
	})
}
