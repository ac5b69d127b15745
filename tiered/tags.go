package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/l1"
)

// InvalidateTags removes every key carrying one of tags (from Options.Tags
// or WithTags) from L2 and from every replica's L1.
func (c *Cache[V]) InvalidateTags(ctx context.Context, tags ...string) error {
	if err := validateTags(tags); err != nil {
		return err
	}
	if c.client.closed.Load() {
		return ErrClosed
	}
	err := c.client.invalidateTagsL2(ctx, c.l2ns(), tags)
	c.dropTagged(tags, nil)
	return errors.Join(err, c.client.publish(ctx, coherence.KindTags, c.ns, tags, uint64(c.client.clock.NowNano())))
}

// dropTagged drops from L1 the keys tagged with tags (from the local index)
// and the keys given.
func (c *Cache[V]) dropTagged(tags, keys []string) {
	if c.l1 != nil {
		for _, t := range tags {
			keys = append(keys, c.l1.KeysWithTag(t)...)
		}
	}
	for _, k := range keys {
		c.dropL1(k)
	}
}

// tagsOf returns v's tags: Options.Tags and extra, without repeats.
func (c *Cache[V]) tagsOf(key string, v V, extra []string) []string {
	var tags []string
	if c.opts.Tags != nil {
		tags = c.opts.Tags(key, v)
	}
	if len(extra) > 0 {
		tags = append(slices.Clip(tags), extra...)
	}
	if len(tags) < 2 {
		return tags
	}
	tags = slices.Clone(tags)
	slices.Sort(tags)
	return slices.Compact(tags)
}

// addTags records e's key in the L2 set of each of its tags, before e is
// written: a tag invalidation in between then finds the key and ends its
// lease, so the write of data it should have removed fails.
// A failure is returned: the value must then not be written to L2, where a
// tag invalidation could not find it.
func (c *Cache[V]) addTags(ctx context.Context, e *l1.Entry[V]) error {
	if len(e.Tags) == 0 || c.client.l2 == nil {
		return nil
	}
	err := c.client.l2.AddTags(ctx, c.l2ns(), e.Key, e.Tags, c.l2TTL(e))
	if err != nil {
		c.reportL2(ctx, "tags", err)
	}
	return err
}

// invalidateTagsL2 deletes the keys of l2ns tagged with tags, and the tag
// sets, from L2.
func (c *Client) invalidateTagsL2(ctx context.Context, l2ns string, tags []string) error {
	if c.l2 == nil {
		return nil
	}
	keys, err := c.l2.KeysWithTags(ctx, l2ns, tags)
	if err == nil && len(keys) > 0 {
		slices.Sort(keys)
		err = c.l2.Delete(ctx, l2ns, slices.Compact(keys)...)
	}
	if err == nil {
		err = c.l2.DeleteTags(ctx, l2ns, tags)
	}
	if err != nil {
		return fmt.Errorf("tiered: invalidate tags in L2: %w", err)
	}
	return nil
}

// InvalidateTags removes every key of namespace carrying one of tags from L2
// and from every replica's L1, without a Cache (see Invalidate).
func (c *Client) InvalidateTags(ctx context.Context, namespace string, tags ...string) error {
	if err := validateNamespace(namespace); err != nil {
		return err
	}
	if err := validateTags(tags); err != nil {
		return err
	}
	if c.closed.Load() {
		return ErrClosed
	}
	var err error
	if c.l2 != nil {
		var l2ns string
		if l2ns, err = c.l2Namespace(ctx, namespace); err == nil {
			err = c.invalidateTagsL2(ctx, l2ns, tags)
		}
	}
	m := &coherence.Message{Kind: coherence.KindTags, Namespace: namespace, Items: tags}
	for _, cache := range c.cachesOf(namespace) {
		cache.invalidate(m)
	}
	return errors.Join(err, c.publish(ctx, coherence.KindTags, namespace, tags, uint64(c.clock.NowNano())))
}

// l2Namespace is namespace as L2 keys spell it now, read from L2 for a
// process that may have no Cache of it: after a Clear, with its version.
func (c *Client) l2Namespace(ctx context.Context, namespace string) (string, error) {
	v, err := c.l2.NamespaceVersion(ctx, namespace)
	if err != nil || v == 0 {
		return namespace, err
	}
	return fmt.Sprintf("%s#%d", namespace, v), nil
}
