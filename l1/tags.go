package l1

import "sync"

// tagIndex maps each tag to the keys of the entries carrying it. It keeps
// the entry pointer per key so that the exit of an entry that was already
// replaced does not unindex its successor.
type tagIndex[V any] struct {
	mu sync.Mutex
	m  map[string]map[string]*Entry[V]
}

func (t *tagIndex[V]) add(e *Entry[V]) {
	if len(e.Tags) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]map[string]*Entry[V])
	}
	for _, tag := range e.Tags {
		keys := t.m[tag]
		if keys == nil {
			keys = make(map[string]*Entry[V])
			t.m[tag] = keys
		}
		keys[e.Key] = e
	}
}

// remove unindexes e; ristretto calls it (through OnExit) for every entry
// leaving the cache, possibly with nil.
func (t *tagIndex[V]) remove(e *Entry[V]) {
	if e == nil || len(e.Tags) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tag := range e.Tags {
		keys := t.m[tag]
		if keys[e.Key] != e {
			continue
		}
		delete(keys, e.Key)
		if len(keys) == 0 {
			delete(t.m, tag)
		}
	}
}

func (t *tagIndex[V]) keys(tag string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.m[tag]))
	for k := range t.m[tag] {
		out = append(out, k)
	}
	return out
}
