package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/cluster/clustertest"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// The chaos soak (issue 15 item 3): 3 replicas in one process joined by
// gossip run a mixed workload against a versioned database while a
// scheduler with a fixed seed injects faults at random times: first over a
// 3-shard Ring, then over a 3-master Redis Cluster. `make soak` runs it for
// SOAK (5m); `make test` for the default minute.
var (
	soakDuration = flag.Duration("soak.duration", 60*time.Second, "length of the chaos soak, both phases")
	soakSeed     = flag.Uint64("soak.seed", 0, "seed of the chaos soak's fault scheduler and workload; 0 picks one")
	soakCluster  = flag.Float64("soak.cluster", 1.0/3, "share of -soak.duration given to the Redis Cluster phase (0 skips it)")
	soakWorkers  = flag.Int("soak.workers", 3, "workload goroutines per replica")
	soakTags     = flag.Bool("soak.tags", true, "include tag invalidations in the workload (false: to look past the open tag-set bug, see TestRegressionTagSetOnStandIn, fixed)")
)

// The bounds of DESIGN.md that a read is checked against.
const (
	// propagationBound is how long after a write returned another replica
	// may still answer the value it replaced with both links up. Guarantee
	// 3 says 2 ms p99 on an idle loopback; this is the bound the fault
	// tests use for -race on two shared, loaded cores (tiered's
	// staleGrace).
	propagationBound = time.Second
	// detectionBound is guarantees 5 and 6: a link lost, or a message lost
	// on both channels, is detected within 2 s, and from then on the
	// replica serves no L1 entry that could have missed an invalidation.
	detectionBound = 2 * time.Second
	// ringRecovery and clusterRecovery are issue 10's recovery bounds: how
	// soon after a server answers again every replica serves it (Ring: two
	// health rounds and the cleaning; Cluster: one breaker cool-down and
	// its probe), with the fault tests' slack for -race.
	ringRecovery    = time.Second
	clusterRecovery = l2.DefaultBreakerCoolDown + time.Second
)

const (
	replicas   = 3
	mainKeys   = 200
	tagCount   = 10 // tag t<i%10>: 20 keys each
	expKeys    = 16
	wbKeys     = 50
	batchSize  = 10
	opPacing   = 200 * time.Microsecond // between two operations of a worker
	candidates = 50_000                 // stale-read candidates kept for classification
	// writeRetryLimit is how long the workload retries a failed cache
	// write before giving up on it (a write error, must be 0).
	writeRetryLimit = 30 * time.Second
)

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + ":" + strconv.Itoa(i)
	}
	return out
}

func tagOf(key string) string {
	i, _ := strconv.Atoi(key[len("user:"):])
	return "t" + strconv.Itoa(i%tagCount)
}

func TestChaosSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos soak takes a minute")
	}
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos seed %d: rerun with -soak.seed=%d", seed, seed)
	rep := &report{Seed: seed, Duration: soakDuration.String()}
	rep.Goroutines.Start, rep.HeapBytes.Start = runtimeNow()
	clusterShare := min(max(*soakCluster, 0), 1)
	ringTime := time.Duration(float64(*soakDuration) * (1 - clusterShare))
	clusterTime := *soakDuration - ringTime
	for _, ph := range []struct {
		name string
		d    time.Duration
	}{{"ring", ringTime}, {"cluster", clusterTime}} {
		if ph.d <= 0 {
			continue
		}
		t.Run(ph.name, func(t *testing.T) {
			rep.Phases = append(rep.Phases, runPhase(t, ph.name, ph.d, seed))
		})
	}
	// Every phase's replicas and servers are gone (their subtests' cleanups
	// ran): wait for their goroutines to end, as goleak would.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > rep.Goroutines.Start && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	rep.Goroutines.End, rep.HeapBytes.End = runtimeNow()
	rep.publish(t)
}

// runtimeNow returns the goroutines running and the live heap after a GC.
func runtimeNow() (goroutines int, heap uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}

// phase is one topology's run: servers, replicas, database and what the
// checks gathered.
type phase struct {
	t        *testing.T
	name     string
	rng      *rand.Rand
	redis    l2.Config
	servers  []*redistest.Server // the ones faults hit: Ring shards or Cluster masters
	cluster  *redistest.Cluster
	maxPause time.Duration // a Cluster node paused longer would be failed over
	maxDown  time.Duration
	recovery time.Duration

	replicas []*replica
	madeMu   sync.Mutex
	caches   [3][]*tiered.Cache[string] // by namespace, every replica that ran

	keys, expKeys, wbKeys []string
	db                    *versionedDB
	wbdb                  *writeBehindDB
	loaders               *loaderFaults
	exp                   expLoads
	faults                faultLog
	healFailures          int

	stop                          chan struct{}
	wg                            sync.WaitGroup
	reads, writes, writeErrors    atomic.Int64
	writeRetries                  atomic.Int64
	wbWrites, wbErrors, tagWrites atomic.Int64
	mu                            sync.Mutex
	cands                         []candidate
	candsDropped                  int
	getErrs                       []getError
	admin                         []*redis.Client // one per server, for diagnostics
	diagnosed                     atomic.Int64
}

// candidate is a read that answered a version older than one acknowledged
// more than propagationBound before it began: stale unless a fault's bound
// covers it (classified once every fault is known).
type candidate struct {
	Key     string    `json:"key"`
	Replica string    `json:"replica"`
	Slot    int       `json:"-"`
	Op      string    `json:"op"`
	Start   time.Time `json:"start"`
	Got     int64     `json:"version_read"`
	Newer   []dbWrite `json:"-"`
	History []dbWrite `json:"history,omitzero"` // the key's last writes (stale reads only)
	Diag    []string  `json:"servers,omitzero"` // the key's Redis keys on each server, soon after the read
}

// getError is a Get or GetMany that failed.
type getError struct {
	start, end time.Time
	err        string
}

func runPhase(t *testing.T, name string, d time.Duration, seed uint64) phaseReport {
	p := &phase{t: t, name: name, rng: rand.New(rand.NewPCG(seed, seed>>1)), loaders: &loaderFaults{},
		keys: numbered("user", mainKeys), expKeys: numbered("exp", expKeys), wbKeys: numbered("wb", wbKeys),
		stop: make(chan struct{})}
	p.db = newVersionedDB(p.keys, p.loaders)
	p.wbdb = newWriteBehindDB(p.wbKeys)
	p.exp.init(p.expKeys)
	// Write-behind's durability is Redis's (AOF): a killed server must keep
	// its streams for "no acknowledged write lost" to be checkable.
	aof := redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always")
	if name == "ring" {
		p.servers = redistest.StartShards(t, 3, aof)
		var addrs []string
		for _, s := range p.servers {
			addrs = append(addrs, s.Addr())
		}
		p.redis = l2.Config{Addrs: addrs, Timeout: l2Timeout}
		p.maxPause, p.maxDown, p.recovery = 2500*time.Millisecond, 1500*time.Millisecond, ringRecovery
	} else {
		p.cluster = redistest.StartCluster(t, 3, aof)
		p.servers = p.cluster.Masters
		p.redis = l2.Config{ClusterAddrs: p.cluster.Addrs(), Timeout: l2Timeout}
		// Below cluster-node-timeout (2 s): no node is marked failed.
		p.maxPause, p.maxDown, p.recovery = 1500*time.Millisecond, time.Second, clusterRecovery
	}
	for _, srv := range p.servers {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		p.admin = append(p.admin, c)
	}
	for i := range replicas {
		r := &replica{slot: i, gossip: &clustertest.Faults{}}
		p.replicas = append(p.replicas, r)
		p.start(r, p.seeds(i))
	}
	t.Cleanup(p.closeAll)
	if !p.waitHealed(30 * time.Second) {
		t.Fatalf("%s: replicas not healthy at start: %s", name, p.unhealthy())
	}
	began := time.Now()
	p.startWorkers(seed)
	p.schedule(began.Add(d))
	close(p.stop)
	p.wg.Wait()
	elapsed := time.Since(began)
	return p.finish(elapsed)
}

// closeAll closes the replicas still running (Close is idempotent).
func (p *phase) closeAll() {
	for _, r := range p.replicas {
		r.mu.Lock()
		if r.client != nil {
			_ = r.client.Close()
		}
		r.mu.Unlock()
	}
}

func (p *phase) startWorkers(seed uint64) {
	for _, r := range p.replicas {
		for w := range *soakWorkers {
			rng := rand.New(rand.NewPCG(seed+uint64(r.slot)+1, uint64(w)))
			zipf := rand.NewZipf(rng, 1.1, 1, uint64(mainKeys-1))
			p.wg.Go(func() { p.work(r, rng, zipf) })
		}
	}
}

// work runs the mixed workload on r until the phase stops: reads 85%
// (Get 80%, Get of an expiring key 5%), GetMany 3%, database write + Set
// 5%, database write + Delete 5%, database write of a tag's keys +
// InvalidateTags 0.5%, write-behind Set 1.5%.
func (p *phase) work(r *replica, rng *rand.Rand, zipf *rand.Zipf) {
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		r.mu.RLock()
		p.step(r, rng, zipf)
		r.mu.RUnlock()
		time.Sleep(opPacing) // the workload's pacing
	}
}

func (p *phase) step(r *replica, rng *rand.Rand, zipf *rand.Zipf) {
	ctx := context.Background()
	k := p.keys[zipf.Uint64()]
	switch n := rng.IntN(1000); {
	case n < 800:
		start := time.Now()
		v, info, err := r.main.GetWithInfo(ctx, k, p.db.load)
		p.reads.Add(1)
		p.checkRead(r, "Get from "+info.Tier.String(), k, v, err, start)
	case n < 850:
		p.readExpiring(ctx, r, p.expKeys[rng.IntN(len(p.expKeys))])
	case n < 880:
		batch := []string{k}
		for range batchSize - 1 {
			if k := p.keys[zipf.Uint64()]; !slices.Contains(batch, k) {
				batch = append(batch, k)
			}
		}
		start := time.Now()
		got, err := r.main.GetMany(ctx, batch, p.db.loadMany)
		p.reads.Add(int64(len(batch)))
		if err != nil {
			p.recordError("GetMany", err, start)
			return
		}
		for _, k := range batch {
			p.checkRead(r, "GetMany", k, got[k], nil, start)
		}
	case n < 930:
		p.write(r, []string{k}, "set", func(v map[string]string) error { return r.main.Set(ctx, k, v[k]) })
	case n < 980:
		p.write(r, []string{k}, "delete", func(map[string]string) error { return r.main.Delete(ctx, k) })
	case n < 985 && *soakTags:
		tag := tagOf(k)
		var keys []string
		for _, o := range p.keys {
			if tagOf(o) == tag {
				keys = append(keys, o)
			}
		}
		p.tagWrites.Add(1)
		p.write(r, keys, "tags", func(map[string]string) error { return r.main.InvalidateTags(ctx, tag) })
	case n < 985:
		p.write(r, []string{k}, "delete", func(map[string]string) error { return r.main.Delete(ctx, k) })
	default:
		wk := p.wbKeys[rng.IntN(len(p.wbKeys))]
		v := fmt.Sprintf("%s/%d", r.name, p.wbWrites.Add(1))
		if p.wbdb.set(wk, v, func() error { return r.wb.Set(ctx, wk, v) }) != nil {
			p.wbErrors.Add(1)
		}
	}
}

// write runs one database write of keys and the cache call after it,
// retried until it succeeds as an application must: a failed invalidation
// leaves L2 as it was (DESIGN.md promises nothing of a write that returned
// an error), so the write counts as acknowledged when a call returns no
// error.
func (p *phase) write(r *replica, keys []string, kind string, call func(map[string]string) error) {
	p.writes.Add(1)
	err := p.db.write(keys, kind, r.name, r.slot, func(v map[string]string) error {
		return p.retry(func() error { return call(v) })
	})
	if err != nil {
		p.writeErrors.Add(1)
	}
}

// retry calls f until it returns no error, backing off, for at most
// writeRetryLimit.
func (p *phase) retry(f func() error) error {
	deadline := time.Now().Add(writeRetryLimit)
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		p.writeRetries.Add(1)
		time.Sleep(backoff) // the application's retry back-off
	}
}

// checkRead records a failed read, and a read answering a version older
// than one acknowledged more than propagationBound before it began as a
// candidate stale read.
func (p *phase) checkRead(r *replica, op, k, v string, err error, start time.Time) {
	if err != nil {
		p.recordError(op, err, start)
		return
	}
	got, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil {
		got = -1
	}
	cutoff := start.Add(-propagationBound)
	if got >= p.db.floor(k, cutoff) {
		return
	}
	c := candidate{Key: k, Replica: r.name, Slot: r.slot, Op: op, Start: start, Got: got, Newer: p.db.newer(k, got, cutoff, 20)}
	if !p.faults.serverFaultSince(start.Add(-p.recovery - detectionBound - propagationBound)) {
		// No server fault can explain it: what the servers hold of the
		// key now, for the report.
		c.Diag = p.diagnose(k)
	}
	p.mu.Lock()
	if len(p.cands) < candidates {
		p.cands = append(p.cands, c)
	} else {
		p.candsDropped++
	}
	p.mu.Unlock()
}

func (p *phase) recordError(op string, err error, start time.Time) {
	p.mu.Lock()
	p.getErrs = append(p.getErrs, getError{start: start, end: time.Now(), err: op + ": " + err.Error()})
	p.mu.Unlock()
}

// readExpiring reads a key of the expiring namespace, whose loader counts
// loads per key (see expLoads).
func (p *phase) readExpiring(ctx context.Context, r *replica, k string) {
	start := time.Now()
	_, err := r.exp.Get(ctx, k, func(ctx context.Context, k string) (string, error) {
		return p.exp.load(ctx, k, r.name, p)
	})
	p.reads.Add(1)
	if err != nil {
		p.recordError("Get(exp)", err, start)
	}
}
