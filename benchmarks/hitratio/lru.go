package hitratio

import "container/list"

// replayLRU replays w through a least-recently-used cache of capacity
// entries.
func replayLRU(w *workload, capacity int) (int64, error) {
	order := list.New() // front: most recent
	at := make(map[int32]*list.Element, capacity)
	var hits int64
	for _, id := range w.ids {
		if el, ok := at[id]; ok {
			hits++
			order.MoveToFront(el)
			continue
		}
		if order.Len() >= capacity {
			oldest := order.Back()
			delete(at, oldest.Value.(int32))
			order.Remove(oldest)
		}
		at[id] = order.PushFront(id)
	}
	return hits, nil
}
