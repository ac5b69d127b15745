package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Regression (review 6): a lease request that reached a paused Cluster
// master was reported as refused unsent. go-redis's ClusterClient retries a
// command whose read timed out (up to MaxRedirects, without backoff): the
// first attempts are written to the paused master's socket, they fail and
// open its breaker, and the last attempt was refused by the breaker, whose
// l2.ErrUnavailable the caller saw. tiered's unsure took that for "nothing
// was sent" and handed no release to the background; when the master
// resumed it ran the queued GetOrLease and granted the lease to a token no
// caller held, so every replica's Get of the key waited out LeaseWait (up to
// LeaseTTL). The breaker hook now keeps a retried command's earlier server
// error (l2/breaker.go).
//
// "GetMany": since de5d230 a GetMany whose request failed on one master goes
// on under the leases granted elsewhere and calls unsure(lost, err);
// before, a granted lease anywhere (the healthy key's) made it hand every
// key's release to the background, and this case passed. "Get": the same
// root cause on the single-key path (not new in de5d230).
func TestReview6ClusterRetriedLeaseRequestLooksUnsent(t *testing.T) {
	waitsMostly(t)
	for _, how := range []string{"GetMany", "Get"} {
		t.Run(how, func(t *testing.T) { review6RetriedLease(t, how) })
	}
}

func review6RetriedLease(t *testing.T, how string) {
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	cfg := l2.Config{ClusterAddrs: cl.Addrs(), Timeout: 100 * time.Millisecond}
	opts := tiered.Options[string]{TTL: time.Hour, LeaseTTL: time.Minute, LeaseWait: 3 * time.Second}
	aClient := newClient(t, tiered.Config{NodeID: "a", Redis: cfg})
	bClient := newClient(t, tiered.Config{NodeID: "b", Redis: cfg})
	a := newCache(t, aClient, "r6lease", opts)
	b := newCache(t, bClient, "r6lease", opts)

	raw := cl.Client(t)
	l2ns := tiered.L2NameForTest(a)
	channel := slotMaster(t, raw, "strata:invalidations")
	var victimAddr string
	for _, m := range cl.Masters {
		if m.Addr() != channel {
			victimAddr = m.Addr() // not the channel's master: the bus does not open its breaker first
			break
		}
	}
	victim := serverAt(t, cl, victimAddr)
	var healthy, onVictim, warm string
	for i := 0; healthy == "" || onVictim == "" || warm == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		switch m := slotMaster(t, raw, aClient.L2().Key(l2ns, k)); {
		case m != victimAddr && healthy == "":
			healthy = k
		case m == victimAddr && warm == "":
			warm = k
		case m == victimAddr && onVictim == "":
			onVictim = k
		}
	}
	load := func(_ context.Context, ks []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range ks {
			m[k] = "v:" + k
		}
		return m, nil
	}
	var l countingLoader
	// The lease script is cached on the victim (EVALSHA runs there later).
	if v, err := a.Get(ctx, warm, l.load); err != nil || v != "v:"+warm {
		t.Fatalf("warm-up Get = %q, %v", v, err)
	}

	victim.Pause()
	resumed := false
	defer func() {
		if !resumed {
			victim.Resume()
		}
	}()
	switch how {
	case "GetMany":
		got, err := a.GetMany(ctx, []string{healthy, onVictim}, load)
		if err != nil || got[healthy] != "v:"+healthy || got[onVictim] != "v:"+onVictim {
			t.Fatalf("GetMany with the victim paused = %v, %v", got, err)
		}
	case "Get":
		if v, err := a.Get(ctx, onVictim, l.load); err != nil || v != "v:"+onVictim {
			t.Fatalf("Get with the victim paused = %q, %v", v, err)
		}
	}
	errRefused := aClient.L2().Client().Get(ctx, aClient.L2().Key(l2ns, onVictim)).Err()
	t.Logf("A's breaker for the victim after the %s: %v (ErrUnavailable: %v); A's retries %+v",
		how, errRefused, errors.Is(errRefused, l2.ErrUnavailable), aClient.RetryStats())
	victim.Resume()
	resumed = true

	// The master runs what was queued while it was paused: A's lease request
	// grants the lease. A release handed to the background lands within a
	// retry round of the master answering.
	lease := aClient.L2().LeaseKey(l2ns, onVictim)
	leaseGone := func() bool { n, err := raw.Exists(ctx, lease).Result(); return err == nil && n == 0 }
	redistest.WaitFor(t, 5*time.Second, leaseGone, "%v", lazy(func() string {
		ttl, _ := raw.PTTL(ctx, lease).Result()
		return fmt.Sprintf("%s: 5 s after the master answered again, A's lease on %s is still there (%v to live; A's retries %+v): "+
			"its request was sent, but the error A saw was the breaker's refusal of go-redis's last retry, "+
			"taken for unsent, so no release was handed to the background", how, onVictim, ttl, aClient.RetryStats())
	}))
	var bl countingLoader
	if v, err := b.Get(ctx, onVictim, bl.load); err != nil || v != "v:"+onVictim {
		t.Fatalf("B's Get = %q, %v", v, err)
	}
	if s := b.Stats(); s.LeaseTimeouts > 0 {
		t.Fatalf("B waited out LeaseWait on %s: %+v", onVictim, s)
	}
}

// lazy is a message computed when a failure prints it.
type lazy func() string

func (f lazy) String() string { return f() }
