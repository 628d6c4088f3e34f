package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// redisStore is gobreaker's SharedDataStore on Redis: the small adapter
// that DistributedCircuitBreaker needs. Lock is SET NX PX with a token,
// retried every millisecond (gobreaker itself retries a failed Lock only
// after 500ms); Unlock deletes the lock only if it still holds the token.
type redisStore struct {
	client *redis.Client
	mu     sync.Mutex
	tokens map[string]string
}

const lockTTL = 5 * time.Second

var errLocked = errors.New("redisStore: locked")

func (s *redisStore) Lock(name string) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	ctx := context.Background()
	for deadline := time.Now().Add(lockTTL); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ok, err := s.client.SetNX(ctx, name, token, lockTTL).Result()
		if err != nil {
			return err
		}
		if ok {
			s.mu.Lock()
			s.tokens[name] = token
			s.mu.Unlock()
			return nil
		}
	}
	return errLocked
}

var unlock = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

func (s *redisStore) Unlock(name string) error {
	s.mu.Lock()
	token := s.tokens[name]
	s.mu.Unlock()
	return unlock.Run(context.Background(), s.client, []string{name}, token).Err()
}

func (s *redisStore) GetData(name string) ([]byte, error) {
	b, err := s.client.Get(context.Background(), name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (s *redisStore) SetData(name string, data []byte) error {
	return s.client.Set(context.Background(), name, data, 0).Err()
}

// newDistributed returns h behind a gobreaker DistributedCircuitBreaker on
// the Redis at addr, with the same window as ours (10s, 10 buckets), as an
// http.Handler: a 5xx, or the breaker's error, answers 503.
func newDistributed(addr string, h http.Handler) (http.Handler, func(), error) {
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	store := &redisStore{client: client, tokens: map[string]string{}}
	cb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](store, gobreaker.Settings{
		Name: "search", Interval: 10 * time.Second, BucketPeriod: time.Second, Timeout: time.Minute,
	})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := cb.Execute(func() (struct{}, error) {
			rec := &codeWriter{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			if rec.code >= 500 {
				return struct{}{}, errors.New("5xx")
			}
			return struct{}{}, nil
		})
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}), func() { client.Close() }, nil
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
	w.ResponseWriter.WriteHeader(c)
}
