package hitratio

import "container/heap"

// replayBelady replays w through Belady's optimal offline policy with
// bypass (OPT): on a miss, of the resident keys and the requested one, the
// one used again farthest in the future (or never) is left out, so the
// requested key is not inserted when every resident is wanted sooner. This
// is the true optimum for a cache that may decline to store a key, which
// every contender here may (TinyLFU admission is exactly that); the
// classic form, which always inserts, can only do worse.
//
// A max-heap of (next use, key) with lazy deletion finds the farthest
// resident in O(log n): a hit pushes the key's new next use and leaves the
// old pair behind, skipped when it surfaces.
func replayBelady(w *workload, capacity int) (int64, error) {
	next := nextUses(w)
	never := int32(len(w.ids)) // next use of a key not used again
	resident := make([]int32, w.unique)
	for i := range resident {
		resident[i] = -1 // not resident
	}
	h := &useHeap{}
	var hits int64
	size := 0
	for i, id := range w.ids {
		n := next[i]
		if resident[id] >= 0 {
			hits++
			resident[id] = n
			heap.Push(h, use{next: n, id: id})
			continue
		}
		if n == never {
			continue // never used again: storing it cannot help
		}
		if size == capacity {
			top := h.farthest(resident)
			if top.next < n {
				continue // every resident is wanted before this key
			}
			heap.Pop(h)
			resident[top.id] = -1
			size--
		}
		resident[id] = n
		heap.Push(h, use{next: n, id: id})
		size++
	}
	return hits, nil
}

// nextUses returns, for each request i, the index of the next request of
// the same key, or len(w.ids) if there is none.
func nextUses(w *workload) []int32 {
	next := make([]int32, len(w.ids))
	last := make([]int32, w.unique)
	for i := range last {
		last[i] = int32(len(w.ids))
	}
	for i := len(w.ids) - 1; i >= 0; i-- {
		id := w.ids[i]
		next[i] = last[id]
		last[id] = int32(i)
	}
	return next
}

// use is a resident key and when it is next requested.
type use struct {
	next int32
	id   int32
}

// useHeap is a max-heap of uses by next use.
type useHeap []use

func (h useHeap) Len() int           { return len(h) }
func (h useHeap) Less(i, j int) bool { return h[i].next > h[j].next }
func (h useHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *useHeap) Push(x any)        { *h = append(*h, x.(use)) }
func (h *useHeap) Pop() any {
	old := *h
	u := old[len(old)-1]
	*h = old[:len(old)-1]
	return u
}

// farthest drops stale pairs (their key evicted, or used since) from the
// top and returns the resident key used farthest ahead, left on top.
func (h *useHeap) farthest(resident []int32) use {
	for {
		top := (*h)[0]
		if resident[top.id] == top.next {
			return top
		}
		heap.Pop(h)
	}
}
