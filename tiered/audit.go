package tiered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/l2"
)

// The consistency auditor measures what the guarantees promise: how often
// an L1 hit serves a value L2 had already replaced. It samples fresh L1
// hits (one random draw per hit; a sampled hit costs one non-blocking
// channel send) and checks each in the background, at most MaxRate per
// second, against the entry L2 holds for the key. This is the measure of
// Meta's Polaris ("Cache made consistent", 2022): N nines of reads
// consistent within a window.

// Defaults used when an AuditConfig field is zero.
const (
	// DefaultAuditWindow is the time an L1 copy may lag L2 before a hit on
	// it counts as inconsistent: the 2 s within which a lost link or a
	// lost message is detected (guarantees 5 and 6), which covers the
	// propagation bound (2 ms) and the link timeout (1.5 s).
	DefaultAuditWindow = 2 * time.Second
	// DefaultAuditMaxRate is how many sampled hits per second are checked
	// against L2, at most; one L2 read each.
	DefaultAuditMaxRate = 100
)

// AuditConfig turns on the consistency auditor (Config.Audit). It is off
// with a zero SampleRate, and without L2, which it checks against.
type AuditConfig struct {
	// SampleRate is the share of fresh L1 hits checked, from 0 (off) to 1.
	// A hit not sampled costs one random draw.
	SampleRate float64
	// Window: a sampled hit counts as inconsistent when L2 held a different,
	// newer value for longer than Window before the hit, or held none
	// (the key was deleted or invalidated) while the L1 copy lived on for
	// Window after the check. Zero means DefaultAuditWindow.
	Window time.Duration
	// MaxRate bounds the checks per second; samples beyond it, or beyond
	// the queue of 1,024 samples waiting, are skipped and counted. Zero
	// means DefaultAuditMaxRate.
	MaxRate int
}

func (a *AuditConfig) setDefaults() error {
	if math.IsNaN(a.SampleRate) || a.SampleRate < 0 || a.SampleRate > 1 {
		return fmt.Errorf("tiered: Audit.SampleRate must be between 0 and 1, not %v", a.SampleRate)
	}
	if a.Window < 0 || a.MaxRate < 0 {
		return errors.New("tiered: Audit.Window and Audit.MaxRate must not be negative")
	}
	if a.Window == 0 {
		a.Window = DefaultAuditWindow
	}
	if a.MaxRate == 0 {
		a.MaxRate = DefaultAuditMaxRate
	}
	return nil
}

// AuditStats are the consistency auditor's counters for a namespace (zero
// with the auditor off).
type AuditStats struct {
	Samples      uint64 `json:"samples"`      // sampled L1 hits checked against L2
	Inconsistent uint64 `json:"inconsistent"` // of those, hits on a value L2 had replaced or dropped for longer than Window
	Skipped      uint64 `json:"skipped"`      // sampled hits not checked: over MaxRate, L2 failed or held another type's entry, or the value was cached in L1 alone
}

// Nines is −log10 of the inconsistent share of the samples: 3 means one
// hit in 1,000 was inconsistent. With none inconsistent it is the most the
// samples can show, −log10(1/Samples), as if one had been; 0 before the
// first sample.
func (s AuditStats) Nines() float64 {
	if s.Samples == 0 {
		return 0
	}
	return math.Log10(float64(s.Samples)) - math.Log10(float64(max(s.Inconsistent, 1)))
}

func (s AuditStats) add(o AuditStats) AuditStats {
	return AuditStats{Samples: s.Samples + o.Samples, Inconsistent: s.Inconsistent + o.Inconsistent, Skipped: s.Skipped + o.Skipped}
}

// auditCounters are a cache's AuditStats.
type auditCounters struct {
	samples, inconsistent, skipped atomic.Uint64
}

func (a *auditCounters) snapshot() AuditStats {
	return AuditStats{Samples: a.samples.Load(), Inconsistent: a.inconsistent.Load(), Skipped: a.skipped.Load()}
}

// auditee is a cache as the auditor sees it.
type auditee interface {
	// auditCheck checks a sampled hit against L2 and counts its verdict,
	// or reports that it needs a second look (L2 held nothing).
	auditCheck(ctx context.Context, s *auditSample) (recheck bool)
	// auditRecheck takes the second look, Window after the check.
	auditRecheck(ctx context.Context, s *auditSample)
	auditCounters() *auditCounters
}

// auditSample is one sampled hit.
type auditSample struct {
	cache auditee
	entry any   // the *entry[V] the hit served
	at    int64 // the hit's time, on the client's clock
	due   int64 // for a recheck: when it is due, Unix nanoseconds
}

// auditor is a Client's sampler and checker.
type auditor struct {
	c         *Client
	cfg       AuditConfig
	threshold uint64 // a hit is sampled when a uniform uint64 falls below it
	queue     chan auditSample
	ctx       context.Context // ended by close; bounds the checks' L2 reads
	cancel    context.CancelFunc
	done      chan struct{} // closed when run returns
	history   auditHistory
}

// auditQueue is how many sampled hits may wait for a check.
const auditQueue = 1024

// newAuditor returns c's auditor, or nil when it is off.
func newAuditor(c *Client) *auditor {
	cfg := c.cfg.Audit
	if cfg.SampleRate == 0 || c.l2 == nil {
		return nil
	}
	a := &auditor{c: c, cfg: cfg, queue: make(chan auditSample, auditQueue), done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if f := cfg.SampleRate * (1 << 64); f < 1<<64 {
		a.threshold = uint64(f)
	} else {
		a.threshold = math.MaxUint64
	}
	go a.run()
	return a
}

// sample draws whether the hit at now on e of cache is checked, and queues
// it if so. It allocates nothing.
func (a *auditor) sample(cache auditee, e any, now int64) {
	if mathrand.Uint64() >= a.threshold {
		return
	}
	select {
	case a.queue <- auditSample{cache: cache, entry: e, at: now}:
	default:
		cache.auditCounters().skipped.Add(1)
	}
}

// run checks the queued samples, at most MaxRate a second (a token bucket
// with a tenth of a second's burst), and takes the second looks as they
// fall due, until close.
func (a *auditor) run() {
	defer close(a.done)
	perToken := time.Second / time.Duration(a.cfg.MaxRate)
	tokens, burst := 1.0, max(1, float64(a.cfg.MaxRate)/10)
	last := time.Now()
	var rechecks []auditSample // in due order: every one waits Window
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due <-chan time.Time
		if len(rechecks) > 0 {
			timer.Reset(time.Until(time.Unix(0, rechecks[0].due)))
			due = timer.C
		}
		select {
		case <-a.ctx.Done():
			return
		case s := <-a.queue:
			now := time.Now()
			tokens = min(burst, tokens+float64(now.Sub(last))/float64(perToken))
			last = now
			if tokens < 1 {
				s.cache.auditCounters().skipped.Add(1)
				continue
			}
			tokens--
			if s.cache.auditCheck(a.ctx, &s) {
				s.due = now.Add(a.cfg.Window).UnixNano()
				rechecks = append(rechecks, s)
			}
		case now := <-due:
			for len(rechecks) > 0 && rechecks[0].due <= now.UnixNano() {
				s := rechecks[0]
				rechecks = rechecks[1:]
				s.cache.auditRecheck(a.ctx, &s)
			}
		}
	}
}

// close stops the checks; samples not checked yet are dropped uncounted.
func (a *auditor) close() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
}

// auditHistory is the client's recent L1 changes, kept while the auditor
// is on so that a violation can be logged with what this replica saw of
// the key: the writes it made, the invalidations it applied, the fills it
// installed.
type auditHistory struct {
	mu     sync.Mutex
	events [auditHistoryLen]auditEvent
	next   int
}

const auditHistoryLen = 512

type auditEvent struct {
	at      int64
	ns, key string // key "" for a change of the whole namespace's L1
	what    string
	version uint64
}

// record notes an L1 change of key (or of ns's whole L1, key "").
func (h *auditHistory) record(at int64, ns, key, what string, version uint64) {
	h.mu.Lock()
	h.events[h.next%auditHistoryLen] = auditEvent{at: at, ns: ns, key: key, what: what, version: version}
	h.next++
	h.mu.Unlock()
}

// of returns the recorded changes of key in ns, and of ns's whole L1,
// oldest first, as log lines.
func (h *auditHistory) of(ns, key string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for i := max(0, h.next-auditHistoryLen); i < h.next; i++ {
		e := h.events[i%auditHistoryLen]
		if e.ns == ns && (e.key == key || e.key == "") {
			line := time.Unix(0, e.at).UTC().Format("15:04:05.000000") + " " + e.what
			if e.version != 0 {
				line += fmt.Sprintf(" version %d", e.version)
			}
			out = append(out, line)
		}
	}
	return out
}

// audited notes an L1 change of key (all of L1 for "") in c's history when
// the auditor is on.
func (c *Cache[V]) audited(key, what string, version uint64) {
	if a := c.client.audit; a != nil {
		a.history.record(c.client.clock.NowNano(), c.ns, key, what, version)
	}
}

func (c *Cache[V]) auditCounters() *auditCounters { return &c.audits }

// auditCheck implements auditee: it compares the hit's entry with L2's, or
// asks for a second look when L2 holds none.
func (c *Cache[V]) auditCheck(ctx context.Context, s *auditSample) bool {
	e := s.entry.(*entry[V])
	if e.Value.l1Only {
		c.audits.skipped.Add(1) // L2 holds nothing of it to check against
		return false
	}
	env, found, ok := c.auditRead(ctx, e.Key)
	switch {
	case !ok:
		c.audits.skipped.Add(1)
	case !found:
		return true // deleted or invalidated, perhaps: does L1 hear of it?
	default:
		c.judge(e, env, s.at)
	}
	return false
}

// auditRecheck implements auditee: Window after L2 held nothing for the
// key, the hit's entry is inconsistent if L1 still holds it, fresh, and L2
// still holds nothing (or a different value, older than Window).
func (c *Cache[V]) auditRecheck(ctx context.Context, s *auditSample) {
	e := s.entry.(*entry[V])
	now := c.client.clock.NowNano()
	if cur, ok := c.l1.Get(e.Key); !ok || cur != e || now >= e.LocalFreshUntil {
		c.audits.samples.Add(1) // L1 heard of it, or the copy expired
		return
	}
	env, found, ok := c.auditRead(ctx, e.Key)
	switch {
	case !ok:
		c.audits.skipped.Add(1)
	case found:
		c.judge(e, env, now) // L1 still serves e now
	default:
		c.audits.samples.Add(1)
		c.violation(e, s.at, fmt.Sprintf("L2 held nothing for the key for %v while L1 kept the copy",
			c.client.audit.cfg.Window))
	}
}

// auditRead reads key's entry from L2 for the auditor: ok is false when
// that failed or found an entry of another type or corrupt bytes.
func (c *Cache[V]) auditRead(ctx context.Context, key string) (env l2.Envelope, found, ok bool) {
	b, err := c.client.l2.Get(ctx, c.l2ns(), key)
	if err != nil {
		return env, false, false
	}
	if b == nil {
		return env, false, true
	}
	env, err = l2.Decode(b)
	if err != nil || env.Type != 0 && env.Type != c.typeID {
		return env, false, false
	}
	return env, true, true
}

// judge counts a sample of e served at at, against L2's entry env: it is
// inconsistent when env holds a newer, different value written more than
// Window before at.
func (c *Cache[V]) judge(e *entry[V], env l2.Envelope, at int64) {
	c.audits.samples.Add(1)
	if env.Version <= e.Value.version || env.Created >= at-int64(c.client.audit.cfg.Window) || c.sameValue(e, env) {
		return
	}
	c.violation(e, at, fmt.Sprintf("L2 held version %d, written %v before the hit", env.Version,
		time.Duration(at-env.Created).Round(time.Millisecond)))
}

// sameValue reports whether L2's entry env holds e's value: a refresh that
// loaded the same value again makes a newer version, not a different one.
func (c *Cache[V]) sameValue(e *entry[V], env l2.Envelope) bool {
	if e.Value.negative || env.Negative {
		return e.Value.negative == env.Negative
	}
	b, err := marshal(c.opts.Codec, e.Value.v)
	return err == nil && bytes.Equal(b, env.Payload)
}

// violation counts and logs an inconsistent hit on e at hitAt, with the
// key's recent history on this replica.
func (c *Cache[V]) violation(e *entry[V], hitAt int64, why string) {
	c.audits.inconsistent.Add(1)
	c.client.cfg.Logger.Warn("strata: audit: an L1 hit served a value L2 had replaced",
		"namespace", c.ns, "key", e.Key, "served_version", e.Value.version,
		"hit_at", time.Unix(0, hitAt).UTC(), "why", why, "window", c.client.audit.cfg.Window,
		"history", c.client.audit.history.of(c.ns, e.Key))
}
