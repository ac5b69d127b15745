package tiered_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

func TestRedisDownGetFallsBackToLoader(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	if err := cache.Set(ctx, "cached", "in-l1"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	var l countingLoader
	for _, k := range []string{"a", "b", "c"} {
		v, err := cache.Get(ctx, k, l.load)
		if err != nil || v != "v:"+k {
			t.Fatalf("Get(%q) with Redis down = %q, %v; want the loader's value", k, v, err)
		}
	}
	if v, err := cache.Get(ctx, "cached", l.load); err != nil || v != "in-l1" {
		t.Fatalf("L1 value with Redis down = %q, %v", v, err)
	}
	got, err := cache.GetMany(ctx, []string{"x", "y"}, func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"x": "1", "y": "2"}, nil
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("GetMany with Redis down = %v, %v", got, err)
	}
	if s := cache.Stats(); s.L2Errors == 0 {
		t.Errorf("stats %+v, want L2 errors counted", s)
	}
	// Writes degrade too: L1 and the other replicas are updated, and the
	// server is cleaned of the keys before it serves again.
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Errorf("Set with Redis down: %v", err)
	}
	if v, err := cache.Get(ctx, "k", nil); err != nil || v != "v" {
		t.Errorf("Get after Set with Redis down = %q, %v; want the value written", v, err)
	}
	if err := cache.Delete(ctx, "cached"); err != nil {
		t.Errorf("Delete with Redis down: %v", err)
	}
	if _, err := cache.Get(ctx, "cached", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Errorf("after a Delete with Redis down, L1 still answers: %v", err)
	}
	srv.Restart()
	redistest.WaitFor(t, 10*time.Second, func() bool { return c.L2().Health()[0].Serving }, "L2 serving again after restart")
	if err := cache.Set(ctx, "k2", "v2"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Do(t, "DBSIZE"); n.(int64) == 0 {
		t.Errorf("Set after the restart did not reach Redis: %+v", c.L2().Health())
	}
}

func TestL2ErrorsAreLoggedAtMostOncePerInterval(t *testing.T) {
	var logs bytes.Buffer
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Logger: newBufferLogger(&logs), LogInterval: time.Hour})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	srv.Kill()
	var l countingLoader
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := cache.Get(context.Background(), k, l.load); err != nil {
			t.Fatal(err)
		}
	}
	if n := bytes.Count(logs.Bytes(), []byte("L2 unavailable")); n != 1 {
		t.Errorf("%d L2 warnings logged for 8 failures within one interval, want 1:\n%s", n, logs.String())
	}
}

func TestCloseReturnsErrClosedAndLeavesNoGoroutine(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	// A load in flight when Close is called is cancelled and waited for.
	inLoad := make(chan struct{})
	blocked := make(chan error, 1)
	go func() {
		_, err := cache.Get(ctx, "slow", func(ctx context.Context, _ string) (string, error) {
			close(inLoad)
			<-ctx.Done()
			return "", ctx.Err()
		})
		blocked <- err
	}()
	<-inLoad
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; !errors.Is(err, context.Canceled) {
		t.Errorf("in-flight load ended with %v, want context.Canceled", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	calls := map[string]error{}
	_, calls["Get"] = cache.Get(ctx, "k", nil)
	_, calls["GetMany"] = cache.GetMany(ctx, []string{"k"}, nil)
	calls["Set"] = cache.Set(ctx, "k", "v")
	calls["Delete"] = cache.Delete(ctx, "k")
	_, calls["NewCache"] = tiered.NewCache(c, "other", tiered.Options[string]{})
	for name, err := range calls {
		if !errors.Is(err, tiered.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	// goleak.VerifyTestMain checks the goroutines at the end of the package.
}

func TestRawCodecsPassBytesThrough(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	bytesCache := newCache(t, c, "blobs", tiered.Options[[]byte]{L1: tiered.L1Options{Disabled: true}})
	if err := bytesCache.Set(ctx, "b", []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	raw := []byte(srv.Do(t, "GET", "strata:blobs:{b}").(string))
	env, err := l2.Decode(raw)
	if err != nil || !bytes.Equal(env.Payload, []byte{0, 1, 2, 0xff}) {
		t.Fatalf("stored payload %q, %v; want the bytes unencoded", env.Payload, err)
	}
	if v, err := bytesCache.Get(ctx, "b", nil); err != nil || !bytes.Equal(v, []byte{0, 1, 2, 0xff}) {
		t.Fatalf("Get = %v, %v", v, err)
	}
	strCache := newCache(t, c, "strings", tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	if err := strCache.Set(ctx, "s", `he said "hi"`); err != nil {
		t.Fatal(err)
	}
	env, _ = l2.Decode([]byte(srv.Do(t, "GET", "strata:strings:{s}").(string)))
	if string(env.Payload) != `he said "hi"` {
		t.Fatalf("stored string payload %q, want it unencoded", env.Payload)
	}
}
