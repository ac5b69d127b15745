package tiered_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

func TestL1HitSendsNoRedisCommand(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	// No health round in the counted window: its probe is an MGET too.
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}, HealthInterval: time.Hour}})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	var l countingLoader
	if _, err := cache.Get(ctx, "k", l.load); err != nil {
		t.Fatal(err)
	}
	srv.ResetStats(t)
	for range 100 {
		v, err := cache.Get(ctx, "k", l.load)
		if err != nil || v != "v:k" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	for _, cmd := range []string{"get", "set", "mget"} {
		if n := srv.CommandCount(t, cmd); n != 0 {
			t.Errorf("%d %s commands after L1 hits, want 0", n, cmd)
		}
	}
	if got := cache.Stats(); got.L1Hits != 100 || got.Loads != 1 {
		t.Errorf("stats = %+v, want 100 L1 hits and 1 load", got)
	}
}

func TestSecondReplicaReadsL2WithoutLoading(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	a := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{})
	b := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{})
	var la, lb countingLoader
	if _, err := a.Get(ctx, "42", la.load); err != nil {
		t.Fatal(err)
	}
	v, err := b.Get(ctx, "42", lb.load)
	if err != nil || v != "v:42" {
		t.Fatalf("replica B Get = %q, %v", v, err)
	}
	if la.calls.Load() != 1 || lb.calls.Load() != 0 {
		t.Errorf("loader calls A=%d B=%d, want 1 and 0", la.calls.Load(), lb.calls.Load())
	}
	if s := b.Stats(); s.L2Hits != 1 {
		t.Errorf("replica B stats %+v, want one L2 hit", s)
	}
}

func TestNegativeCachingInBothTiers(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	opts := tiered.Options[string]{NegativeTTL: time.Minute}
	a := newCache(t, newClient(t, cfg), "users", opts)
	b := newCache(t, newClient(t, cfg), "users", opts)
	missing := &countingLoader{value: func(string) (string, error) { return "", tiered.ErrNotFound }}
	for range 3 {
		if _, err := a.Get(ctx, "ghost", missing.load); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("replica A Get err = %v, want ErrNotFound", err)
		}
	}
	if _, err := b.Get(ctx, "ghost", missing.load); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("replica B Get err = %v, want ErrNotFound", err)
	}
	if n := missing.calls.Load(); n != 1 {
		t.Errorf("loader called %d times, want 1 (negative entry in L1 and L2)", n)
	}
	if s := a.Stats(); s.L1NegativeHits != 2 || s.L1Hits != 2 {
		t.Errorf("replica A stats %+v, want 2 negative L1 hits", s)
	}
	if s := b.Stats(); s.L2NegativeHits != 1 || s.L2Hits != 1 {
		t.Errorf("replica B stats %+v, want 1 negative L2 hit", s)
	}
}

func TestNegativeNotCachedWithoutNegativeTTL(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	missing := &countingLoader{value: func(string) (string, error) { return "", tiered.ErrNotFound }}
	for range 3 {
		if _, err := cache.Get(ctx, "ghost", missing.load); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if n := missing.calls.Load(); n != 3 {
		t.Errorf("loader called %d times, want 3", n)
	}
}

func TestExpiryInBothTiers(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk}
	opts := tiered.Options[string]{TTL: time.Minute, Jitter: -1}
	a := newCache(t, newClient(t, cfg), "users", opts)
	b := newCache(t, newClient(t, cfg), "users", opts)
	var l countingLoader
	if _, err := a.Get(ctx, "k", l.load); err != nil {
		t.Fatal(err)
	}
	clk.Advance(59 * time.Second)
	if _, err := a.Get(ctx, "k", l.load); err != nil || l.calls.Load() != 1 {
		t.Fatalf("before expiry: err %v, loads %d, want a hit", err, l.calls.Load())
	}
	if _, err := b.Get(ctx, "k", l.load); err != nil || l.calls.Load() != 1 {
		t.Fatalf("before expiry on B: err %v, loads %d, want an L2 hit", err, l.calls.Load())
	}
	clk.Advance(2 * time.Second)
	if _, err := b.Get(ctx, "k", l.load); err != nil || l.calls.Load() != 2 {
		t.Fatalf("after expiry on B: err %v, loads %d, want a reload (L1 and L2 expired)", err, l.calls.Load())
	}
	pttl := srv.Do(t, "PTTL", "strata:users:{k}").(int64)
	if pttl <= 0 || pttl > int64(time.Minute/time.Millisecond) {
		t.Errorf("L2 PTTL = %d ms, want within the TTL", pttl)
	}
}

func TestL1MaxTTLBoundsL1Life(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	c, srv := newRedisClient(t, tiered.Config{Clock: clk})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{MaxTTL: time.Second}})
	var l countingLoader
	if _, err := cache.Get(ctx, "k", l.load); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	srv.ResetStats(t)
	if _, err := cache.Get(ctx, "k", l.load); err != nil {
		t.Fatal(err)
	}
	if srv.CommandCount(t, "get") != 1 || l.calls.Load() != 1 {
		t.Errorf("after MaxTTL: %d L2 GETs, %d loads; want the L1 copy dropped and L2 read once", srv.CommandCount(t, "get"), l.calls.Load())
	}
}

func TestJitterSpreadsExpiries(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: 100 * time.Second, Jitter: 0.2})
	seen := map[int64]bool{}
	for i := range 50 {
		key := "k" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if err := cache.Set(ctx, key, "v"); err != nil {
			t.Fatal(err)
		}
		pttl := srv.Do(t, "PTTL", "strata:users:{"+key+"}").(int64)
		if pttl < 79_000 || pttl > 120_001 {
			t.Fatalf("PTTL %d ms outside 100 s ± 20%%", pttl)
		}
		seen[pttl/1000] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 TTLs fell in %d distinct seconds, want them spread", len(seen))
	}
}

func TestCorruptL2BytesAreReplaced(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	for _, garbage := range []string{"", "x", "\x53\xa7\x01\x00garbage", strings.Repeat("\xff", 100)} {
		srv.Do(t, "SET", "strata:users:{k}", garbage)
		var l countingLoader
		v, err := cache.Get(ctx, "k", l.load)
		if err != nil || v != "v:k" || l.calls.Load() != 1 {
			t.Fatalf("garbage %q: Get = %q, %v after %d loads; want the loader's value", garbage, v, err, l.calls.Load())
		}
		if v, err := cache.Get(ctx, "k", nil); err != nil || v != "v:k" {
			t.Fatalf("garbage %q: L2 not repaired: %q, %v", garbage, v, err)
		}
	}
	if s := cache.Stats(); s.CorruptEntries != 4 {
		t.Errorf("CorruptEntries = %d, want 4", s.CorruptEntries)
	}
}

func TestCorruptPayloadForCodecIsAMiss(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	type user struct{ Name string }
	cache := newCache(t, c, "users", tiered.Options[user]{L1: tiered.L1Options{Disabled: true}})
	env := l2.Envelope{FreshUntil: time.Now().Add(time.Hour).UnixNano(), StaleUntil: time.Now().Add(time.Hour).UnixNano(), Payload: []byte("{not json")}
	srv.Do(t, "SET", "strata:users:{k}", env.Encode())
	v, err := cache.Get(ctx, "k", func(context.Context, string) (user, error) { return user{"loaded"}, nil })
	if err != nil || v.Name != "loaded" {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	if s := cache.Stats(); s.CorruptEntries != 1 {
		t.Errorf("CorruptEntries = %d, want 1", s.CorruptEntries)
	}
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{MaxValueSize: 10})
	long := strings.Repeat("k", tiered.MaxKeyLength+1)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"get empty key", func() error { _, err := cache.Get(ctx, "", nil); return err }, tiered.ErrInvalidKey},
		{"get long key", func() error { _, err := cache.Get(ctx, long, nil); return err }, tiered.ErrInvalidKey},
		{"set empty key", func() error { return cache.Set(ctx, "", "v") }, tiered.ErrInvalidKey},
		{"delete long key", func() error { return cache.Delete(ctx, "ok", long) }, tiered.ErrInvalidKey},
		{"getmany empty key", func() error { _, err := cache.GetMany(ctx, []string{"a", ""}, nil); return err }, tiered.ErrInvalidKey},
		{"set oversized value", func() error { return cache.Set(ctx, "k", "01234567890") }, tiered.ErrValueTooLarge},
		{"empty namespace", func() error { _, err := tiered.NewCache(c, "", tiered.Options[string]{}); return err }, tiered.ErrInvalidNamespace},
		{"namespace with brace", func() error { _, err := tiered.NewCache(c, "a{b}", tiered.Options[string]{}); return err }, tiered.ErrInvalidNamespace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := cache.Set(ctx, "k", "v", tiered.WithTTL(ttl)); err == nil {
			t.Errorf("Set with TTL %v succeeded", ttl)
		}
	}
	if _, err := cache.Get(ctx, strings.Repeat("k", tiered.MaxKeyLength), nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Errorf("key of MaxKeyLength: err = %v, want ErrNotFound", err)
	}
}

func TestOversizedLoadedValueIsReturnedNotCached(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{MaxValueSize: 4})
	var l countingLoader
	for range 2 {
		if v, err := cache.Get(ctx, "key", l.load); err != nil || v != "v:key" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if l.calls.Load() != 2 || cache.Stats().Uncached != 2 {
		t.Errorf("loads %d, stats %+v; want the value served but never cached", l.calls.Load(), cache.Stats())
	}
}

func TestInvalidOptions(t *testing.T) {
	c := newClient(t, tiered.Config{})
	for name, opts := range map[string]tiered.Options[string]{
		"negative TTL":   {TTL: -time.Second},
		"jitter above 1": {Jitter: 1.5},
		"negative max":   {MaxValueSize: -1},
		"negative L1":    {L1: tiered.L1Options{MaxCost: -1}},
	} {
		if _, err := tiered.NewCache(c, "ns", opts); err == nil {
			t.Errorf("%s: NewCache succeeded", name)
		}
	}
	if _, err := tiered.NewClient(context.Background(), tiered.Config{Redis: l2.Config{Addrs: []string{"a:1"}, ClusterAddrs: []string{"b:1"}}}); err == nil {
		t.Error("NewClient accepted both Addrs and ClusterAddrs")
	}
}

func TestSingleflightOneLoadPerKey(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	release := make(chan struct{})
	var started sync.Once
	inLoad := make(chan struct{})
	l := &countingLoader{value: func(k string) (string, error) {
		started.Do(func() { close(inLoad) })
		<-release
		return "v:" + k, nil
	}}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			v, err := cache.Get(ctx, "hot", l.load)
			if err == nil && v != "v:hot" {
				err = errors.New("wrong value " + v)
			}
			errs <- err
		})
	}
	<-inLoad
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if l.calls.Load() != 1 {
		t.Errorf("loader ran %d times for %d concurrent Gets, want 1", l.calls.Load(), n)
	}
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	inLoad := make(chan struct{})
	var first sync.Once
	l := &countingLoader{}
	load := func(ctx context.Context, k string) (string, error) {
		isFirst := false
		first.Do(func() { isFirst = true })
		if isFirst {
			// The first caller's load honours its ctx and ends with it.
			close(inLoad)
			<-ctx.Done()
			return "", ctx.Err()
		}
		return l.load(ctx, k)
	}
	firstCtx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := cache.Get(firstCtx, "k", load)
		firstErr <- err
	}()
	<-inLoad
	second := make(chan error, 1)
	go func() {
		v, err := cache.Get(context.Background(), "k", load)
		if err == nil && v != "v:k" {
			err = errors.New("wrong value " + v)
		}
		second <- err
	}()
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second caller failed with the first one's cancellation: %v", err)
	}
	if v, err := cache.Get(context.Background(), "k", nil); err != nil || v != "v:k" {
		t.Fatalf("value not cached after the second load: %q, %v", v, err)
	}
}

func TestWaiterLeavesWhenItsContextEnds(t *testing.T) {
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	release := make(chan struct{})
	inLoad := make(chan struct{})
	leader := make(chan error, 1)
	go func() {
		_, err := cache.Get(context.Background(), "k", func(context.Context, string) (string, error) {
			close(inLoad)
			<-release
			return "v", nil
		})
		leader <- err
	}()
	<-inLoad
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "other", nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter got %v, want its own deadline", err)
	}
	close(release)
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
}

func TestLoaderPanicBecomesError(t *testing.T) {
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	_, err := cache.Get(context.Background(), "k", func(context.Context, string) (string, error) { panic("boom") })
	var pe *tiered.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "tiered_test") {
		t.Fatalf("err = %v, want a PanicError with the loader's stack", err)
	}
	_, err = cache.GetMany(context.Background(), []string{"a"}, func(context.Context, []string) (map[string]string, error) { panic("batch boom") })
	if !errors.As(err, &pe) || pe.Value != "batch boom" {
		t.Fatalf("GetMany err = %v, want a PanicError", err)
	}
}

func TestLoaderErrorsAreNotCached(t *testing.T) {
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{NegativeTTL: time.Minute})
	boom := errors.New("db down")
	failing := &countingLoader{value: func(string) (string, error) { return "", boom }}
	for range 2 {
		if _, err := cache.Get(context.Background(), "k", failing.load); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the loader's", err)
		}
	}
	if failing.calls.Load() != 2 || cache.Stats().LoadErrors != 2 {
		t.Errorf("loads %d, stats %+v: errors must not be cached", failing.calls.Load(), cache.Stats())
	}
}

func TestReadYourWrites(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	for i := range 200 {
		key := "k" + strings.Repeat("x", i%7)
		want := "v" + string(rune('a'+i%26))
		if err := cache.Set(ctx, key, want); err != nil {
			t.Fatal(err)
		}
		if v, err := cache.Get(ctx, key, nil); err != nil || v != want {
			t.Fatalf("after Set(%q): Get = %q, %v", want, v, err)
		}
		if i%3 == 0 {
			if err := cache.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			if v, err := cache.Get(ctx, key, nil); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("after Delete: Get = %q, %v", v, err)
			}
		}
	}
}

func TestSetDuringLoadWinsInL1(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	release := make(chan struct{})
	inLoad := make(chan struct{})
	slow := func(context.Context, string) (string, error) {
		close(inLoad)
		<-release
		return "old", nil
	}
	done := make(chan string, 1)
	go func() {
		v, _ := cache.Get(ctx, "k", slow)
		done <- v
	}()
	<-inLoad
	if err := cache.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if v := <-done; v != "old" {
		t.Fatalf("loader's caller got %q, want its own load", v)
	}
	if v, err := cache.Get(ctx, "k", nil); err != nil || v != "new" {
		t.Fatalf("after Set during a load: Get = %q, %v; want new", v, err)
	}
}

func TestWriteThrough(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	db := map[string]string{}
	var mu sync.Mutex
	fail := errors.New("db rejects")
	cache := newCache(t, c, "users", tiered.Options[string]{Writer: func(_ context.Context, k, v string) error {
		if v == "bad" {
			return fail
		}
		mu.Lock()
		defer mu.Unlock()
		db[k] = v
		return nil
	}})
	if err := cache.Set(ctx, "k", "good"); err != nil || db["k"] != "good" {
		t.Fatalf("Set = %v, db = %v", err, db)
	}
	if err := cache.Set(ctx, "k", "bad"); !errors.Is(err, fail) {
		t.Fatalf("Set = %v, want the writer's error", err)
	}
	if v, _ := cache.Get(ctx, "k", nil); v != "good" {
		t.Fatalf("after a failed write-through: Get = %q, want the old value", v)
	}
}
