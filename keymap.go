package httpbreaker

import (
	"hash/maphash"
	"sync/atomic"
)

// keyMap is a set's breakers by key. Every keyed call reads it, without a
// lock; making or dropping a key writes it, under the set's mu. It is split
// into shards, each an immutable map that a write replaces whole, so that a
// read is a hash, one atomic load and a map lookup, and a write copies one
// shard of some 64 keys. Go's map finds a key in fewer dependent loads than
// sync.Map's trie, which matters once a set's keys no longer fit in the
// CPU's caches.
type keyMap struct {
	seed   maphash.Seed
	mask   uint64
	shards []atomic.Pointer[map[string]*keyBreaker]
}

// keysPerShard is about how many keys a shard holds at the bound.
const keysPerShard = 64

// newKeyMap returns an empty map sized for maxKeys keys.
func newKeyMap(maxKeys int) *keyMap {
	n := 1
	for n*keysPerShard < maxKeys && n < 1<<16 {
		n *= 2
	}
	return &keyMap{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]atomic.Pointer[map[string]*keyBreaker], n)}
}

func (m *keyMap) shard(key string) *atomic.Pointer[map[string]*keyBreaker] {
	return &m.shards[maphash.String(m.seed, key)&m.mask]
}

// load returns key's breaker, nil if it has none.
func (m *keyMap) load(key string) *keyBreaker {
	if s := m.shard(key).Load(); s != nil {
		return (*s)[key]
	}
	return nil
}

// store sets key's breaker; the set's mu must be held.
func (m *keyMap) store(key string, br *keyBreaker) {
	sh := m.shard(key)
	next := make(map[string]*keyBreaker, m.lenOf(sh)+1)
	if s := sh.Load(); s != nil {
		for k, v := range *s {
			next[k] = v
		}
	}
	next[key] = br
	sh.Store(&next)
}

// drop removes the keys for which gone reports true, a shard copied once
// for all of its keys that go; the set's mu must be held.
func (m *keyMap) drop(gone func(*keyBreaker) bool) {
	for i := range m.shards {
		sh := &m.shards[i]
		s := sh.Load()
		if s == nil {
			continue
		}
		var next map[string]*keyBreaker
		for k, v := range *s {
			if !gone(v) {
				continue
			}
			if next == nil {
				next = make(map[string]*keyBreaker, len(*s))
				for k2, v2 := range *s {
					next[k2] = v2
				}
			}
			delete(next, k)
		}
		if next != nil {
			sh.Store(&next)
		}
	}
}

// each calls f with every breaker.
func (m *keyMap) each(f func(*keyBreaker)) {
	for i := range m.shards {
		if s := m.shards[i].Load(); s != nil {
			for _, br := range *s {
				f(br)
			}
		}
	}
}

func (m *keyMap) lenOf(sh *atomic.Pointer[map[string]*keyBreaker]) int {
	if s := sh.Load(); s != nil {
		return len(*s)
	}
	return 0
}
