package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// Limits on names and values.
const (
	// MaxKeyLength is the longest key accepted, in bytes. Redis allows far
	// more, but a key this long is a bug in the caller, and every key is held
	// in memory once per replica.
	MaxKeyLength = 1024
	// MaxNamespaceLength is the longest namespace accepted, in bytes.
	MaxNamespaceLength = 128
	// DefaultTTL is the freshness of a value when Options.TTL is zero.
	DefaultTTL = 5 * time.Minute
	// DefaultJitter spreads expiries by ±10%, so keys filled together do not
	// all expire together.
	DefaultJitter = 0.1
	// DefaultMaxValueSize is the largest encoded value cached when
	// Options.MaxValueSize is zero: larger values belong in a blob store, and
	// one of them would stall a Redis connection for every caller behind it.
	DefaultMaxValueSize = 1 << 20
	// DefaultEarlyRefreshBeta is XFetch's beta when Options.EarlyRefreshBeta
	// is zero: 1 is the value the XFetch paper shows to be optimal for
	// avoiding stampedes without refreshing much earlier than needed.
	DefaultEarlyRefreshBeta = 1.0
	// MaxEntryTTL is the longest TTL accepted (Options' durations and
	// WithTTL): a century is past any real expiry, and far enough from
	// time's range (about 292 years of nanoseconds) that adding it to now,
	// with jitter and the stale windows, cannot overflow.
	MaxEntryTTL = 100 * 365 * 24 * time.Hour
	// DefaultLeaseTTL bounds how long one replica may hold a key's load lease
	// when Options.LeaseTTL is zero. It should exceed the p99 load time: a
	// load that outlives its lease lets a second loader in. It is also the
	// longest a dead holder delays the others.
	DefaultLeaseTTL = 5 * time.Second
	// DefaultL1MaxCost bounds a cache's L1 when L1Options.MaxCost is zero
	// (l1.DefaultMaxCost: 64 MiB).
	DefaultL1MaxCost = l1.DefaultMaxCost
	// DefaultL1MaxTTL is how long an L1 copy may be served without looking
	// at L2 when L1Options.MaxTTL is zero (l1.DefaultMaxTTL: a minute).
	DefaultL1MaxTTL = l1.DefaultMaxTTL
)

// Off turns off a setting whose zero value means its default:
// Options.Jitter and Options.EarlyRefreshBeta (and, in l2, l2.Off for
// l2.Config.BreakerFailures). Any negative value does the same; Off says so
// by name. A tier is turned off with L1Options.Disabled, or by leaving
// Config.Redis empty.
const Off = -1

// L1Options configures a cache's in-process tier.
type L1Options struct {
	// MaxCost bounds the tier's size in bytes (encoded value, key and a fixed
	// per-entry overhead). Zero means DefaultL1MaxCost. The ristretto
	// engine's admission counters (ten per 160 bytes of MaxCost, as
	// ristretto advises ten per entry) take a quarter to two fifths of
	// MaxCost again in memory from NewCache on, per cache; otter sizes its
	// own as it fills.
	MaxCost int64
	// MaxTTL is how long a value may be served from L1 without looking at L2,
	// whatever its TTL: the bound on staleness if an invalidation is missed.
	// Zero means DefaultL1MaxTTL.
	MaxTTL time.Duration
	// Disabled turns L1 off: every Get reads L2.
	Disabled bool
	// Engine is the cache library under L1: l1.Ristretto (the zero value)
	// or l1.Otter. Otter keeps far more hits where recency matters (ARC
	// OLTP, recency-skewed traces) and has the cheaper hit; Ristretto keeps
	// more in small caches of a stable, frequency-driven hot set (LIRS GLI
	// and LOOP). BENCHMARKS.md has both on real traces and in the hit
	// benchmarks.
	Engine l1.Engine
}

// Options configures one Cache.
//
// NOTE: values in L1 are shared between callers. A V that is a pointer, slice
// or map must be treated as read-only by everyone who gets it.
type Options[V any] struct {
	// TTL is how long a value is fresh. Zero means DefaultTTL.
	TTL time.Duration
	// StaleWhileRevalidate is how long after TTL a value may still be served,
	// stale, while one refresh for the whole cluster runs in the background.
	// Zero means never.
	StaleWhileRevalidate time.Duration
	// StaleIfError is how long after TTL a value may still be served, stale,
	// when the loader fails; the failure is reported (Stats, Observer and
	// GetWithInfo's Info.Cause). Zero means never.
	StaleIfError time.Duration
	// NegativeTTL is how long a loader's ErrNotFound is remembered in both
	// tiers. Zero means not at all.
	NegativeTTL time.Duration
	// Jitter spreads every TTL by ± this fraction, uniformly. Zero means
	// DefaultJitter; Off (any negative value) means none. At most 1.
	Jitter float64
	// EarlyRefreshBeta is XFetch's beta: a hit refreshes the value in the
	// background with a probability that rises as expiry nears, scaled by the
	// last load's duration times beta. Zero means DefaultEarlyRefreshBeta;
	// Off (any negative value) means no early refresh.
	EarlyRefreshBeta float64
	// LeaseTTL is how long the replica that loads a missing key holds the
	// cluster-wide load lease. Zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// LeaseWait is how long a caller waits for another replica's load before
	// loading itself (without caching the result), on Config.Clock. Zero
	// means LeaseTTL.
	LeaseWait time.Duration
	// RefreshTimeout bounds a background refresh (early refresh and
	// stale-while-revalidate). Zero means LeaseTTL.
	RefreshTimeout time.Duration
	// Sliding makes every access extend a value's life by TTL from the
	// access. L2's expiry is pushed out at most once per key per TTL/2 per
	// replica, never on every read.
	Sliding bool
	// L1 configures the in-process tier.
	L1 L1Options
	// Codec encodes values for L2 and sizes them for L1. Nil means JSON, or no
	// encoding at all for []byte and string.
	Codec Codec[V]
	// Schema names the encoding of the namespace's values in L2. Every L2
	// entry carries a fingerprint of it: Schema when set, else the names of
	// V and of Codec's type. A cache that reads an entry of another
	// fingerprint leaves it alone (it is neither served nor deleted), loads
	// the value and keeps it in L1 only, and counts it in
	// Stats.TypeMismatches. So two builds that disagree on V can share a
	// namespace during a rolling deploy, each missing on the other's
	// entries, while every write and invalidation still reaches both.
	//
	// Until the other kind's entries expire (their TTL), their keys go
	// without L2 and without the cluster-wide load lease for this cache.
	//
	// Leave it empty and a change of V's type or of the codec changes the
	// fingerprint by itself; so does renaming V or its package, or going
	// from a value to a pointer type, even when the encoding stays. Set it, and change it, when V's encoded form
	// changes incompatibly under the same type name (a field changing its
	// type), or to let caches of different Go types that encode alike (two
	// services' own User structs) share entries by naming one schema. Do not
	// move to a new namespace for a type change instead: writes and
	// invalidations under the old namespace would not reach the new one.
	Schema string
	// MaxValueSize is the largest encoded value, in bytes. Set returns
	// ErrValueTooLarge beyond it; a loaded value beyond it is returned but not
	// cached. Zero means DefaultMaxValueSize.
	MaxValueSize int
	// Tags returns the invalidation tags of a value (InvalidateTags drops
	// every key carrying one of them). Nil means none; WithTags adds tags to
	// one Set.
	Tags func(key string, v V) []string
	// Writer, when set, makes Set write-through: Set calls it first and
	// updates the cache only if it succeeds. Nothing orders two Sets of one
	// key on different replicas between their Writer calls and their L2
	// writes: the database may end with one value and the cache with the
	// other. Serialize the writers of a key (a row lock held across Set),
	// or write the database and Delete instead.
	Writer func(ctx context.Context, key string, v V) error
	// WriteBehind, when set, makes Set and Delete write-behind: see
	// WriteBehind. It needs L2 (Redis 6.2 or later) and excludes Writer.
	WriteBehind *WriteBehind[V]
}

func (o *Options[V]) setDefaults() error {
	for _, d := range []time.Duration{o.TTL, o.NegativeTTL, o.StaleWhileRevalidate, o.StaleIfError, o.LeaseTTL, o.LeaseWait, o.RefreshTimeout} {
		if d < 0 || d > MaxEntryTTL {
			return fmt.Errorf("tiered: durations in Options must be between 0 and MaxEntryTTL (%v), not %v", MaxEntryTTL, d)
		}
	}
	if o.MaxValueSize < 0 {
		return errors.New("tiered: MaxValueSize must not be negative")
	}
	if o.Jitter > 1 {
		return errors.New("tiered: Jitter must be at most 1")
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = DefaultJitter
	case o.Jitter < 0:
		o.Jitter = 0
	}
	switch {
	case o.EarlyRefreshBeta == 0:
		o.EarlyRefreshBeta = DefaultEarlyRefreshBeta
	case o.EarlyRefreshBeta < 0:
		o.EarlyRefreshBeta = 0
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeaseWait == 0 {
		o.LeaseWait = o.LeaseTTL
	}
	if o.RefreshTimeout == 0 {
		o.RefreshTimeout = o.LeaseTTL
	}
	if o.Codec == nil {
		o.Codec = defaultCodec[V]()
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.WriteBehind != nil {
		if o.Writer != nil {
			return errors.New("tiered: Options.Writer (write-through) and Options.WriteBehind exclude each other")
		}
		wb := *o.WriteBehind // the caller's stays as it was
		if err := wb.setDefaults(); err != nil {
			return err
		}
		o.WriteBehind = &wb
	}
	return nil
}

func (o *Options[V]) l1Config() l1.Config {
	return l1.Config{MaxCost: o.L1.MaxCost, MaxTTL: o.L1.MaxTTL, Engine: o.L1.Engine}
}

// SetOption changes one Set call.
type SetOption func(*setOptions)

type setOptions struct {
	ttl  time.Duration
	tags []string
}

// WithTags gives one Set's value these invalidation tags, besides those of
// Options.Tags.
func WithTags(tags ...string) SetOption {
	return func(o *setOptions) { o.tags = append(o.tags, tags...) }
}

// validateTags checks tags against the envelope's limits.
func validateTags(tags []string) error {
	if len(tags) > l2.MaxTags {
		return fmt.Errorf("%w: %d tags, limit %d", ErrInvalidKey, len(tags), l2.MaxTags)
	}
	for _, t := range tags {
		if t == "" || len(t) > l2.MaxTagLength {
			return fmt.Errorf("%w: tag of %d bytes", ErrInvalidKey, len(t))
		}
	}
	return nil
}

// WithTTL makes one Set use ttl instead of Options.TTL (jitter still
// applies). Set rejects a ttl that is not positive or exceeds MaxEntryTTL.
func WithTTL(ttl time.Duration) SetOption {
	return func(o *setOptions) { o.ttl = ttl }
}

// validateTTL checks one Set's TTL.
func validateTTL(key string, ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxEntryTTL {
		return fmt.Errorf("tiered: TTL %v of %q must be positive and at most MaxEntryTTL (%v)", ttl, key, MaxEntryTTL)
	}
	return nil
}

func validateKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLength {
		return invalidKey(key)
	}
	return nil
}

func invalidKey(key string) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalidKey, len(key), MaxKeyLength)
}

func validateNamespace(ns string) error {
	if len(ns) == 0 || len(ns) > MaxNamespaceLength || strings.ContainsAny(ns, "{}#") {
		return fmt.Errorf("%w: %q", ErrInvalidNamespace, ns)
	}
	return nil
}
