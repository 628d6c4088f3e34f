package httpbreaker

import (
	"context"
	"errors"
)

// Do runs fn with ctx behind key's breaker, for calls that are not HTTP (a
// database query): while the breaker rejects, fn does not run and Do returns
// a *RejectedError; otherwise fn's error, as it is, judged as Call.Err (by
// default nil succeeds, any other error fails, and a call canceled, or
// whose deadline was spent before it was admitted, is excluded). Its keys
// are client keys, made on first use up to WithMaxKeys. A nil ctx or fn, or
// an invalid key, is an error.
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
	br.noteSide(sideClient)
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
func doThrough(ctx context.Context, set *Breakers, br *keyBreaker, fn func(context.Context) error) (err error) {
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
		run: func(*probeRun) {
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
