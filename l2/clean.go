package l2

import (
	"context"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/l2/internal/health"
)

// clean makes server i safe to serve, then returns it to service unless the
// routing epoch moved on: it deletes the keys whose writes failed, or
// flushes the server whole, and on a Ring stamps it with epoch e. Writes
// that fail meanwhile are cleaned in turn.
func (h *watch) clean(i int, e uint64) {
	n := h.nodes[i]
	for {
		keys, all := n.takePending()
		err := h.cleanOnce(n, keys, all, e)
		h.mu.Lock()
		if err != nil {
			h.mu.Unlock()
			n.markDirty(keys, all) // try again on a later round
			h.cleaning[i].Store(false)
			return
		}
		if n.cleaned() {
			h.act(health.Cleaned(h.view(), i, e))
			// Under mu: once the server may serve, a failed write may take
			// it out and a round start another cleaning, whose flag a late
			// Store here would clear.
			h.cleaning[i].Store(false)
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
	}
}

// cleanOnce deletes keys from n, or with all flushes it, and on a Ring
// stamps it with epoch e.
func (h *watch) cleanOnce(n *node, keys []string, all bool, e uint64) error {
	var err error
	switch {
	case all:
		_, err = h.flush(h.ctx, n)
	case len(keys) > 0:
		if err = h.replay(h.ctx, n, keys); err == nil {
			h.repaired(keys)
		}
	}
	if err == nil && h.ring {
		err = h.stamp(n, e)
	}
	return err
}

// replay deletes keys from n: writes to them failed while it was out.
func (h *watch) replay(ctx context.Context, n *node, keys []string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		c, cancel := context.WithTimeout(ctx, h.timeout)
		_, err := n.admin.Pipelined(c, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(c, k)
			}
			return nil
		})
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// flush removes every data key and lease n holds under the prefix, plain or
// stand-in, and leaves the tag sets and namespace versions. It returns how
// many keys it removed.
func (h *watch) flush(ctx context.Context, n *node) (int, error) {
	total := 0
	for _, match := range []string{h.prefix + ":*", h.prefix + "@*"} {
		var cursor uint64
		for {
			c, cancel := context.WithTimeout(ctx, h.timeout)
			keys, next, err := n.admin.Scan(c, cursor, match, 1000).Result()
			if err == nil {
				keys = dataKeys(keys)
				if len(keys) > 0 {
					_, err = n.admin.Pipelined(c, func(p redis.Pipeliner) error {
						for _, k := range keys {
							p.Unlink(c, k)
						}
						return nil
					})
				}
			}
			cancel()
			if err != nil {
				return total, err
			}
			total += len(keys)
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return total, nil
}

// repaired tells the watcher which value keys a replay deleted.
func (h *watch) repaired(keys []string) {
	if h.watcher == nil || h.parse == nil {
		return
	}
	byNS := map[string][]string{}
	for _, k := range keys {
		if ns, key, ok := h.parse(k); ok {
			byNS[ns] = append(byNS[ns], key)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ns, keys := range byNS {
		if !h.closed {
			h.wg.Go(func() { h.watcher.Repaired(ns, keys) })
		}
	}
}
