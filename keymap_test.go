package httpbreaker

import (
	"strconv"
	"sync"
	"testing"
)

// TestTheKeyMapUnderReadersAndWriters makes and drops keys, under a mutex as
// the set does, while many goroutines read them: a reader finds every key
// that was made and not dropped, and never one that was dropped.
func TestTheKeyMapUnderReadersAndWriters(t *testing.T) {
	m := newKeyMap(1000)
	const n = 2000
	brs := make([]*keyBreaker, n)
	for i := range brs {
		brs[i] = &keyBreaker{key: "k" + strconv.Itoa(i)}
	}
	var mu sync.Mutex
	for i := range n / 2 { // the first half stays
		m.store(brs[i].key, brs[i])
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := r; ; i = (i + 7) % (n / 2) {
				select {
				case <-stop:
					return
				default:
				}
				if got := m.load(brs[i].key); got != brs[i] {
					t.Errorf("key %s: got %p, want %p", brs[i].key, got, brs[i])
					return
				}
			}
		}()
	}
	together(4, func(w int) { // the second half comes and goes
		for i := n/2 + w; i < n; i += 4 {
			mu.Lock()
			m.store(brs[i].key, brs[i])
			mu.Unlock()
		}
		mu.Lock()
		m.drop(func(br *keyBreaker) bool { i := keyIndex(br); return i >= n/2 && i%2 == 1 })
		mu.Unlock()
	})
	close(stop)
	readers.Wait()
	for i, br := range brs {
		if got, gone := m.load(br.key), i >= n/2 && i%2 == 1; gone != (got == nil) {
			t.Fatalf("key %s: found %v, want it dropped: %v", br.key, got != nil, gone)
		}
	}
	count := 0
	m.each(func(*keyBreaker) { count++ })
	if count != n*3/4 {
		t.Fatalf("%d keys in all, want %d", count, n*3/4)
	}
}

func keyIndex(br *keyBreaker) int {
	i, _ := strconv.Atoi(br.key[1:])
	return i
}
