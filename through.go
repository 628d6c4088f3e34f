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
	run func(pr *probeRun)
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
	// judging is timed (0 otherwise); at is when it ended (ns since the
	// set's epoch), to within a tick of the clock's when it is not timed.
	took time.Duration
	at   int64
}

// goexit reports whether the call ended its goroutine with runtime.Goexit.
func (e ending) goexit() bool { return !e.returned && e.panicked == nil }

// through puts one call through br, on any side: it asks the breaker to
// admit the call, and as the breaker decides, runs it untracked, answers it
// without running it, or runs it and records how it ended, in one place
// however it ends: when run returns; when it panics, after which the panic
// goes on from inside the call's own unwinding, so that whoever recovers it
// further up sees the stack where it happened; and when it ends its
// goroutine with runtime.Goexit.
func (br *keyBreaker) through(p *passage) {
	t, a := br.tryAdmit()
	if a.decision != admitCall {
		if a.decision == passCall {
			p.pass()
		} else {
			p.reject(a.rejection(br.key))
		}
		return
	}
	var start int64
	timed := br.judging.timed()
	if timed {
		start = br.clock.now()
	}
	returned := false
	defer func() {
		e := ending{returned: returned}
		if !returned {
			e.panicked = recover() // nil for a Goexit
		}
		if timed {
			e.at = br.clock.now()
			e.took = time.Duration(e.at - start)
		} else {
			e.at = br.clock.recent() // a tick old at most: done reads the clock where that matters
		}
		v, judgePanicked := judgeSafely(p, e)
		br.done(t, v, e.at) // recorded however the call, or its judging, ended
		if e.panicked != nil {
			panic(e.panicked)
		}
		if judgePanicked != nil {
			panic(judgePanicked)
		}
	}()
	p.run(t.probe)
	returned = true
}

// judgeSafely returns what p's judge says of a call that ended as e, or,
// should the judge (a classifier of the user's) panic, a failure and what it
// panicked with: the call is recorded either way, so that its probe slot
// and its admission are never held for good.
func judgeSafely(p *passage, e ending) (v verdict, panicked any) {
	defer func() {
		if panicked = recover(); panicked != nil {
			v = verdict{outcome: Failure}
		}
	}()
	return p.judge(e), nil
}

// clientCall is the client side's part (Transport's, KeyedTransport's,
// Do's) of a call on its way through br, of set: each side puts the call
// through br with closures of its own, which tell the clientCall how it
// went.
//
// A call whose context was already done when the breaker admitted it (a
// deadline spent before the call, a caller that had given up) is excluded,
// whatever it returned, without asking the classifier: the dependency
// never had a chance to answer, and a healthy one must not trip for it. A
// panic or a Goexit is a failure, and goes on.
//
// A call made within a route group's request, with its context, tells the
// request's scope how it went (blame.go), an untracked call too: the
// upstream's failure all the same.
type clientCall struct {
	set   *Breakers
	br    *keyBreaker
	ctx   context.Context
	sc    *callScope // the scope of the route group's request it is made within, nil if none
	since uint64     // the scope's mark when the call began
	spent bool       // its context was done when it was let through
}

// startCall begins a client call through br, of set, made with ctx.
func startCall(set *Breakers, br *keyBreaker, ctx context.Context) clientCall {
	cc := clientCall{set: set, br: br, ctx: ctx, sc: set.scopeOf(ctx)}
	if cc.sc != nil {
		cc.since = cc.sc.calling(set, br)
	}
	return cc
}

// letThrough notes that the breaker let the call through, admitted or
// untracked, as it goes: whether its context is spent already.
func (cc *clientCall) letThrough() { cc.spent = cc.ctx.Err() != nil }

// passed tells blame how an untracked call that returned went, as describe
// says.
func (cc *clientCall) passed(describe func() Call) {
	if cc.sc != nil && !cc.spent {
		c := describe()
		cc.sc.called(cc.set, cc.br, cc.br.judging.judge(&c, 0), cc.since)
	}
}

// rejected tells blame that the breaker rejected the call.
func (cc *clientCall) rejected() {
	if cc.sc != nil {
		cc.sc.called(cc.set, cc.br, verdict{outcome: Failure}, cc.since)
	}
}

// plain reports whether a call that ended as e says, and answered with no
// error and no failure status, is a plain success, which needs no Call: it
// returned with its context live when admitted, and br judges by
// DefaultClassifier, untimed, which would call it a success.
func (cc *clientCall) plain(e ending) bool {
	return e.returned && !cc.spent && cc.br.judging.classify == nil && cc.br.judging.slowCall == 0
}

// judge returns what an admitted call that ended as e says means, c
// describing it if it returned (nil for a plain success), and tells blame.
func (cc *clientCall) judge(e ending, c *Call) verdict {
	var v verdict
	switch {
	case !e.returned:
		v.outcome = Failure
	case cc.spent:
		v.outcome = Excluded
	case c != nil:
		v = cc.br.judging.judge(c, e.took)
	}
	if cc.sc != nil {
		cc.sc.called(cc.set, cc.br, v, cc.since)
	}
	return v
}
