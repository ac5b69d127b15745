package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/l2"
)

// invalidateTags is Cache.InvalidateTags.
func (c *Cache[V]) invalidateTags(ctx context.Context, tags ...string) error {
	if err := validateTags(tags); err != nil {
		return err
	}
	done, err := c.client.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	if ctx, err = detach(ctx, "invalidate tags"); err != nil {
		return err
	}
	err = c.versionReady(ctx)
	var deleted []string
	if err == nil && c.client.l2 != nil {
		err = c.underVersion(ctx, unseen(func(l2ns string) error {
			keys, err := c.client.invalidateTagsL2(ctx, l2ns, tags)
			deleted = append(deleted, keys...)
			return err
		}))
	}
	c.dropTagged(tags)
	for _, k := range deleted {
		c.dropL1(k)
	}
	return errors.Join(err, c.client.publishTagged(ctx, c.ns, tags, deleted))
}

// publishTagged tells the other replicas about a tag invalidation: the tags,
// and the keys it deleted from L2. A key listed in a tag's L2 set may carry
// other tags in L1 now (a later Set changed them; sets only grow), and it is
// gone from L2 all the same.
func (c *Client) publishTagged(ctx context.Context, ns string, tags, deleted []string) error {
	now := uint64(c.clock.NowNano())
	err := c.publish(ctx, coherence.KindTags, ns, tags, now)
	if len(deleted) > 0 {
		err = errors.Join(err, c.publish(ctx, coherence.KindKeys, ns, deleted, now))
	}
	return err
}

// dropTagged drops from L1 the keys tagged with tags (from the local index),
// first fencing off fills of data tagged with them that are in flight.
func (c *Cache[V]) dropTagged(tags []string) {
	// Reads in flight may be of tagged keys L1 does not hold yet: a read
	// starting after this must not join one (see forgetFlights).
	defer c.forgetAllFlights()
	if c.client.audit != nil {
		c.audited("", fmt.Sprintf("tags %q invalidated", tags), 0)
	}
	if c.l1 == nil {
		c.guard.InvalidateTags(tags...)
		return
	}
	c.l1.InvalidateTags(tags...)
}

// tagsOf returns v's tags, Options.Tags and extra, sorted and without
// repeats. A panic in Options.Tags, or a tag the envelope cannot hold, is an
// error.
func (c *Cache[V]) tagsOf(key string, v V, extra []string) ([]string, error) {
	tags, err := c.userTags(key, v)
	if err != nil {
		return nil, err
	}
	if len(extra) > 0 {
		tags = append(slices.Clip(tags), extra...)
	}
	if len(tags) > 1 {
		tags = slices.Clone(tags)
		slices.Sort(tags)
		tags = slices.Compact(tags)
	}
	if err := validateTags(tags); err != nil {
		return nil, fmt.Errorf("tiered: tags of %q: %w", key, err)
	}
	return tags, nil
}

// userTags calls Options.Tags, turning a panic into a *PanicError.
func (c *Cache[V]) userTags(key string, v V) (tags []string, err error) {
	if c.opts.Tags == nil {
		return nil, nil
	}
	defer recoverCallback("Tags", &err)
	return c.opts.Tags(key, v), nil
}

// addTags records e's key in the L2 set of each of its tags. A failure is
// returned: the value must then not be in L2, where a tag invalidation could
// not find it.
func (c *Cache[V]) addTags(ctx context.Context, e *entry[V]) error {
	return c.addTagsIn(ctx, c.l2ns(), e)
}

// addTagsIn is addTags under the namespace's L2 name l2ns.
func (c *Cache[V]) addTagsIn(ctx context.Context, l2ns string, e *entry[V]) error {
	if len(e.Tags) == 0 || c.client.l2 == nil {
		return nil
	}
	err := c.client.l2.AddTags(ctx, l2ns, e.Key, e.Tags, c.l2TTL(e))
	if err != nil {
		c.reportL2(ctx, "tags", err)
	}
	return err
}

// invalidateTagsL2 deletes the keys of l2ns tagged with tags from L2, with
// their leases, and the tag sets, and returns the keys it deleted. The
// namespace's tag fence moves first, so loads in flight whose keys are not
// in the sets yet refuse to fill (see readTagFence). Memberships popped but
// whose keys could not be deleted are put back, so a retry finds them.
func (c *Client) invalidateTagsL2(ctx context.Context, l2ns string, tags []string) ([]string, error) {
	if c.l2 == nil {
		return nil, nil
	}
	ctx = context.WithoutCancel(ctx) // half an invalidation helps no one
	if err := c.l2.AdvanceTagFence(ctx, l2ns); err != nil {
		return nil, fmt.Errorf("tiered: invalidate tags in L2: %w", err)
	}
	// The sets that were popped are returned even when others failed.
	sets, err := c.l2.PopTags(ctx, l2ns, tags)
	var keys []string
	for _, set := range sets {
		keys = append(keys, set.Members...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) > 0 {
		if derr := c.l2.Delete(ctx, l2ns, keys...); derr != nil {
			c.restoreTags(ctx, l2ns, tags, sets)
			err, keys = errors.Join(err, derr), nil
		}
	}
	if err != nil {
		return keys, fmt.Errorf("tiered: invalidate tags in L2: %w", err)
	}
	return keys, nil
}

// tagFence is what a tagged load read of its namespace's tag fence before
// loading (see readTagFence).
type tagFence struct {
	needed bool // the loaded value may carry tags (Options.Tags is set)
	fence  l2.TagFence
	err    error
}

// errTagFenceMoved says a tag invalidation ran while a value loaded.
var errTagFenceMoved = errors.New("tiered: a tag invalidation ran during the load")

// readTagFence reads the namespace's tag fence before a leased load. Only
// values with tags need it, and only Options.Tags gives loaded values tags.
//
// Why: a tag invalidation pops the tag sets, but a key being loaded is not
// in them yet, and its lease is not found. So the invalidation first
// advances the fence, and the load compares it, after adding its key to the
// sets, with this reading: either the invalidation advanced it before the
// second reading (the load does not fill), or the key was in the sets before
// they were popped (the invalidation deletes the key and its lease, and the
// fill fails or is deleted).
func (c *Cache[V]) readTagFence(ctx context.Context) tagFence {
	if c.opts.Tags == nil {
		return tagFence{}
	}
	f, err := c.client.l2.ReadTagFence(ctx, c.l2ns())
	if err != nil {
		c.reportL2(ctx, "tag fence", err)
	}
	return tagFence{needed: true, fence: f, err: err}
}

// checkTagFence fails with errTagFenceMoved when the tag fence moved since
// t was read, for an entry with tags; an L2 error, t's or this reading's,
// is returned as is.
func (c *Cache[V]) checkTagFence(ctx context.Context, t tagFence, e *entry[V]) error {
	if !t.needed || len(e.Tags) == 0 {
		return nil
	}
	if t.err != nil {
		return t.err
	}
	now, err := c.client.l2.ReadTagFence(ctx, c.l2ns())
	switch {
	case err != nil:
		c.reportL2(ctx, "tag fence", err)
		return err
	case now != t.fence:
		return errTagFenceMoved
	}
	return nil
}

// restoreTags puts popped tag sets back after their keys could not be
// deleted, so that a retry of the invalidation finds them; each lives as
// long as it had left (a set without expiry gets MaxEntryTTL).
func (c *Client) restoreTags(ctx context.Context, l2ns string, tags []string, sets []l2.TagSet) {
	for i, set := range sets {
		ttl := set.TTL
		if ttl <= 0 {
			ttl = MaxEntryTTL
		}
		for _, k := range set.Members {
			if err := c.l2.AddTags(ctx, l2ns, k, tags[i:i+1], ttl); err != nil {
				c.l2Error(ctx, l2ns, "tags", err)
				break // the other tags' sets may still go back
			}
		}
	}
}

// invalidateTags is Client.InvalidateTags.
func (c *Client) invalidateTags(ctx context.Context, namespace string, tags ...string) error {
	if err := validateNamespace(namespace); err != nil {
		return err
	}
	if err := validateTags(tags); err != nil {
		return err
	}
	done, err := c.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	if ctx, err = detach(ctx, "invalidate tags"); err != nil {
		return err
	}
	var deleted []string
	if c.l2 != nil {
		err = c.inNamespace(ctx, namespace, func(l2ns string) error {
			keys, err := c.invalidateTagsL2(ctx, l2ns, tags)
			deleted = append(deleted, keys...)
			return err
		})
	}
	for _, m := range []*coherence.Message{
		{Kind: coherence.KindTags, Namespace: namespace, Items: tags},
		{Kind: coherence.KindKeys, Namespace: namespace, Items: deleted},
	} {
		for _, cache := range c.cachesOf(namespace) {
			cache.invalidate(m)
		}
	}
	return errors.Join(err, c.publishTagged(ctx, namespace, tags, deleted))
}

// inNamespace runs op, an L2 write or invalidation of namespace, under its
// L2 name read from L2 (the process may have no Cache of it): after a
// Clear, with its version. If a Clear moved the version while op ran, op
// runs again under the new one (see Cache.underVersion).
func (c *Client) inNamespace(ctx context.Context, namespace string, op func(l2ns string) error) error {
	v, err := c.l2.NamespaceVersion(ctx, namespace)
	if err != nil {
		return err
	}
	if err := op(l2.NamespaceAt(namespace, v)); err != nil {
		return err
	}
	now, err := c.l2.LatestVersion(ctx, namespace)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", errVersionUnchecked, err)
	case now <= v:
		return nil
	}
	return op(l2.NamespaceAt(namespace, now))
}
