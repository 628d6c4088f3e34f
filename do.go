package httpbreaker

import (
	"context"
	"errors"
)

// Do runs fn behind key's breaker: the entry point for calls that are not
// HTTP, such as a database query or a gRPC call. fn gets ctx. While the
// breaker rejects, fn does not run, and Do returns a *RejectedError, which
// errors.Is(err, ErrOpen) matches; otherwise Do returns what fn returns,
// as it is.
//
//	var total int
//	err := breakers.Do(r.Context(), "orders-db", func(ctx context.Context) error {
//		return db.QueryRowContext(ctx, "SELECT sum(amount) FROM orders").Scan(&total)
//	})
//
// The key is a client key (Status.Side "client"), with the set's policies,
// metrics, logs, hooks, status page, control and fleet, as Transport's. Keys
// are created on first use, as a KeyedTransport's are: they count against
// WithMaxKeys, past which fn runs untracked (logged once), and the default
// IdleTTL applies.
//
// What fn's outcome means is the classifier's to say (DefaultClassifier, or
// WithClassifier's), with the Call's Err set to fn's error and its Request
// nil: by default a nil error is a success, any other error a failure,
// unless ctx had been canceled by the caller when fn returned it (excluded,
// whatever the error); a deadline that passed while fn ran is a failure,
// one spent before the call was admitted excluded, whatever fn returns. A
// classifier that knows fn's errors tells the others apart:
//
//	httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
//		if errors.Is(c.Err, sql.ErrNoRows) {
//			return httpbreaker.Success // an answer, not a failure of the database
//		}
//		return httpbreaker.DefaultClassifier(c)
//	})
//
// A panic in fn, or a runtime.Goexit, is a failure, and goes on. A call
// that fails or is rejected within a route group's request, with its
// context (as r.Context() above), is blamed for the failure the route
// group passes on, as a Transport's is.
//
// Do returns an error, without running fn, if ctx or fn is nil or key is
// not a valid key: mistakes of the caller's, never a panic at request time.
func (b *Breakers) Do(ctx context.Context, key string, fn func(context.Context) error) error {
	br := b.lookup(key)
	if br == nil || ctx == nil || fn == nil {
		switch err := checkKey(key); {
		case err != nil:
			return errors.New("httpbreaker: Do(" + quoteKey(key) + "): " + err.Error())
		case ctx == nil:
			return errors.New("httpbreaker: Do(" + quoteKey(key) + "): nil Context")
		case fn == nil:
			return errors.New("httpbreaker: Do(" + quoteKey(key) + "): nil func")
		}
		if br = b.keyed(key, sideClient, func() []any { return []any{"side", "client", "call", "Do"} }); br == nil {
			return fn(ctx) // past WithMaxKeys: untracked
		}
	}
	br.side(sideClient)
	if !b.clients.Load() {
		b.clients.Store(true)
	}
	return doThrough(ctx, b, br, fn)
}

// doCall describes what fn, run with ctx for key, returned as a Call.
func doCall(ctx context.Context, key string, err error) Call {
	return Call{Key: key, Err: err, ClientGone: err != nil && ctx.Err() == context.Canceled}
}

// doThrough runs fn through br, of set: Do over the client side of
// through, as roundTripThrough sends a request.
func doThrough(ctx context.Context, set *Breakers, br *breaker, fn func(context.Context) error) (err error) {
	cc := startCall(set, br, ctx)
	br.through(&passage{
		pass: func() {
			cc.letThrough()
			err = fn(ctx)
			cc.passed(func() Call { return doCall(ctx, br.key, err) })
		},
		reject: func(rj Rejection) {
			err = &RejectedError{rj}
			cc.rejected()
		},
		run: func(*probe) {
			cc.letThrough()
			err = fn(ctx)
		},
		judge: func(e ending) verdict {
			if cc.plain(e) && err == nil {
				return cc.judge(e, nil)
			}
			c := doCall(ctx, br.key, err)
			return cc.judge(e, &c)
		},
	})
	return err
}
