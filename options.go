package httpbreaker

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/prometheus/client_golang/prometheus"
)

// New returns a set of breakers configured by opts. An invalid option or
// policy is an error naming what is wrong, never a panic later. Close the
// set when you are done with it: with shared state, a set dropped without
// Close goes on syncing, and the fleet counts it as a live replica.
func New(opts ...Option) (*Breakers, error) {
	b := &Breakers{settings: defaultSettings(), clock: clock{epoch: time.Now()}}
	b.alarm.clock = &b.clock
	var errs []error
	for _, opt := range opts {
		if opt == nil {
			errs = append(errs, errors.New("nil Option"))
			continue
		}
		if err := opt.apply(&b.settings); err != nil {
			errs = append(errs, err)
		}
	}
	for _, err := range b.cfg.validate(nil) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("httpbreaker: %w", err)
	}
	b.keys = newKeyMap(b.maxKeys)
	b.notifier = newNotifier(b.logger, b.hooks)
	if b.shared != nil {
		if b.replica == "" {
			b.replica = defaultReplica()
		}
		b.notifier.replica = b.replica
		b.fleet = newFleet(b.allBreakers, &b.clock, b.notifier, b.shared, b.replica, b.namespace)
	}
	if b.registerer != nil {
		if err := b.registerer.Register(newCollector(b)); err != nil {
			return nil, fmt.Errorf("httpbreaker: registering metrics with namespace %q: %w "+
				"(each Breakers on one registerer needs its own WithNamespace)", b.namespace, err)
		}
	}
	if b.fleet != nil {
		go b.fleet.loop()
	}
	b.watchUnusedKeys()
	return b, nil
}

// An Option configures New. Options apply in order. The policy options set
// only the fields they name (the non-zero ones), so a later option refines
// an earlier one instead of replacing it.
type Option interface {
	apply(*settings) error
}

// option is an Option that is a function.
type option func(*settings) error

func (o option) apply(s *settings) error { return o(s) }

// settings is what the options of New set.
type settings struct {
	cfg           Config
	logger        *slog.Logger
	classifier    Classifier // nil: DefaultClassifier
	rejectHandler http.Handler
	hooks         []func(Event)
	maxKeys       int
	namespace     string
	registerer    prometheus.Registerer
	shared        sharedstate.Store // nil: the set learns alone
	replica       string            // this replica's name in the fleet; "": made up by New
}

// defaultSettings returns the settings before any option.
func defaultSettings() settings {
	return settings{logger: slog.Default(), maxKeys: DefaultMaxKeys, namespace: "httpbreaker"}
}

// DefaultMaxKeys is how many keys a Breakers tracks unless WithMaxKeys says
// otherwise.
const DefaultMaxKeys = 1000

// WithPolicy sets the default policy, which every key inherits.
func WithPolicy(p Policy) Option {
	return option(func(b *settings) error {
		b.cfg.Defaults = p.inherit(b.cfg.Defaults)
		return nil
	})
}

// WithKeyPolicy sets key's policy; its unset fields inherit the defaults. A
// key that ends in * names a family: the policy of every key that begins
// with the rest and has none of its own. A policy that no key in use takes
// a minute after New is logged once, naming the closest key: most often a
// typo.
func WithKeyPolicy(key string, p Policy) Option {
	return option(func(b *settings) error {
		if err := checkPolicyKey(key); err != nil {
			return fmt.Errorf("WithKeyPolicy(%s): %w", quoteKey(key), err)
		}
		if b.cfg.Keys == nil {
			b.cfg.Keys = map[string]Policy{}
		}
		b.cfg.Keys[key] = p.inherit(b.cfg.Keys[key])
		return nil
	})
}

// WithConfig sets the defaults and per-key policies of c, as LoadConfig
// returns them.
func WithConfig(c Config) Option {
	return option(func(b *settings) error {
		if err := WithPolicy(c.Defaults).apply(b); err != nil {
			return err
		}
		for key, p := range c.Keys {
			if err := WithKeyPolicy(key, p).apply(b); err != nil {
				return fmt.Errorf("WithConfig: keys: %w", err)
			}
		}
		return nil
	})
}

// WithRegisterer registers the metrics with r. Without it no metrics are
// registered anywhere; pass prometheus.DefaultRegisterer for the global one.
// A second Breakers on the same registerer needs its own WithNamespace, or
// New returns an error.
func WithRegisterer(r prometheus.Registerer) Option {
	return option(func(b *settings) error {
		if r == nil {
			return errors.New("WithRegisterer: nil Registerer")
		}
		b.registerer = r
		return nil
	})
}

var metricNamespace = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// WithNamespace sets the prefix of the metric names (default "httpbreaker").
func WithNamespace(ns string) Option {
	return option(func(b *settings) error {
		if !metricNamespace.MatchString(ns) {
			return fmt.Errorf("WithNamespace: %q is not a metric name prefix (want letters, digits and _, not starting with a digit)", ns)
		}
		b.namespace = ns
		return nil
	})
}

// WithLogger sets the logger for state changes (default slog.Default()).
// To log nothing, pass slog.New(slog.DiscardHandler).
func WithLogger(l *slog.Logger) Option {
	return option(func(b *settings) error {
		if l == nil {
			return errors.New("WithLogger: nil Logger")
		}
		b.logger = l
		return nil
	})
}

// WithClassifier replaces DefaultClassifier, which decides whether a request
// succeeded, failed or is left out. It sees the key, so one classifier can
// treat keys differently; it can call DefaultClassifier for what it does not
// decide itself.
func WithClassifier(c Classifier) Option {
	return option(func(b *settings) error {
		if c == nil {
			return errors.New("WithClassifier: nil Classifier")
		}
		b.classifier = c
		return nil
	})
}

// WithRejectHandler sets the answer to rejected requests, in place of the
// 503 problem response: a fallback such as a cached page or a degraded
// result. The handler reads which key rejected the request, its state and
// when to retry with RejectionFrom(r). The request still counts as rejected.
func WithRejectHandler(h http.Handler) Option {
	return option(func(b *settings) error {
		if h == nil {
			return errors.New("WithRejectHandler: nil Handler")
		}
		b.rejectHandler = h
		return nil
	})
}

// WithMaxKeys bounds how many keys get a breaker (default DefaultMaxKeys),
// and so the memory and metric series the set can use. Once n keys exist,
// requests for any other key pass straight through without a breaker, are
// counted as untracked, and the first of them is logged.
func WithMaxKeys(n int) Option {
	return option(func(b *settings) error {
		if n < 1 {
			return fmt.Errorf("WithMaxKeys: must be at least 1, got %d", n)
		}
		b.maxKeys = n
		return nil
	})
}

// WithStateChangeHook calls f after every change of every key's state, in
// order, on a goroutine of the set's own: a hook that blocks or panics
// holds up no request. Each call adds a hook; Flush waits for them.
func WithStateChangeHook(f func(Event)) Option {
	return option(func(b *settings) error {
		if f == nil {
			return errors.New("WithStateChangeHook: nil func")
		}
		b.hooks = append(b.hooks, f)
		return nil
	})
}

// WithSharedState shares what the set's breakers learn with the other
// replicas of a fleet through s (redisstate makes one on Redis), in the
// background, never on a request's path; Close stops it.
func WithSharedState(s sharedstate.Store) Option {
	return option(func(b *settings) error {
		if s == nil {
			return errors.New("WithSharedState: nil Store")
		}
		if d := s.Interval(); d < time.Millisecond {
			return fmt.Errorf("WithSharedState: the store's interval is %v; want at least 1ms", d)
		}
		b.shared = s
		return nil
	})
}

// WithReplica names this replica in its fleet, for the records and status
// pages of the others: a pod's name, say. Without it a replica is named by
// its host name, process id and a random suffix. It matters only with
// WithSharedState; each replica's name must be unique in the fleet.
func WithReplica(name string) Option {
	return option(func(b *settings) error {
		if name == "" || len(name) > 128 || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
			return fmt.Errorf("WithReplica: %s is not a replica name: want 1 to 128 bytes of UTF-8, "+
				"no control characters", quoteKey(name))
		}
		b.replica = name
		return nil
	})
}
