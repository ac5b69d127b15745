package strata_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// BenchmarkInvalidationPropagation measures how long a Set on one replica
// takes to be applied on another (3 replicas), with both channels, pub/sub
// only, and gossip only (pub/sub denied by ACL), beside a raw go-redis
// PUBLISH→receive and a raw memberlist send→receive in the same run. It
// reports p50 and p99 in microseconds.
func BenchmarkInvalidationPropagation(b *testing.B) {
	for _, mode := range []string{"both", "pubsub", "gossip"} {
		b.Run(mode, func(b *testing.B) { benchPropagation(b, mode) })
	}
	b.Run("raw-publish", benchRawPublish)
	b.Run("raw-memberlist", benchRawMemberlist)
}

func benchPropagation(b *testing.B, mode string) {
	srv := redistest.Start(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var clients []*tiered.Client
	var caches []*tiered.Cache[string]
	seed := ""
	applied := make(chan time.Duration, 16)
	for i := range 3 {
		cfg := tiered.Config{NodeID: "r" + strconv.Itoa(i), Redis: l2.Config{Addrs: []string{srv.Addr()}}, Logger: quiet}
		if i == 1 {
			cfg.Observer = lagObserver(applied)
		}
		if mode != "pubsub" {
			g := &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
			if seed != "" {
				g.Join = []string{seed}
			}
			cfg.Gossip = g
		}
		c, err := tiered.NewClient(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		seed = c.GossipAddr()
		cache, err := tiered.NewCache(c, "bench", tiered.Options[string]{TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		clients, caches = append(clients, c), append(caches, cache)
	}
	if mode == "gossip" {
		srv.Do(b, "ACL", "SETUSER", "default", "-publish", "-subscribe")
		srv.Do(b, "CLIENT", "KILL", "TYPE", "pubsub")
	}
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := caches[0].Set(ctx, "k"+strconv.Itoa(i%64), "v"); err != nil {
			b.Fatal(err)
		}
		select {
		case lag := <-applied: // measured from the publish, by the receiver
			lat = append(lat, lag)
		case <-time.After(5 * time.Second):
			b.Fatal("invalidation never applied")
		}
	}
	reportLatency(b, lat)
}

// lagObserver passes the lag of each applied invalidation to ch.
type lagObserver chan time.Duration

func (o lagObserver) Observe(_ context.Context, e tiered.Event) {
	if e.Kind == tiered.EventInvalidation {
		o <- e.Duration
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func benchRawPublish(b *testing.B) {
	srv := redistest.Start(b)
	pub := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	sub := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer pub.Close()
	defer sub.Close()
	ctx := context.Background()
	ps := sub.Subscribe(ctx, "raw")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		b.Fatal(err)
	}
	ch := ps.Channel()
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := pub.Publish(ctx, "raw", "invalidate k").Err(); err != nil {
			b.Fatal(err)
		}
		<-ch
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

// rawDelegate hands memberlist's messages to a channel.
type rawDelegate struct{ got chan []byte }

func (d rawDelegate) NodeMeta(int) []byte               { return nil }
func (d rawDelegate) NotifyMsg(m []byte)                { d.got <- append([]byte(nil), m...) }
func (d rawDelegate) GetBroadcasts(int, int) [][]byte   { return nil }
func (d rawDelegate) LocalState(bool) []byte            { return nil }
func (d rawDelegate) MergeRemoteState(_ []byte, _ bool) {}

func benchRawMemberlist(b *testing.B) {
	var nodes []*memberlist.Memberlist
	got := make(chan []byte, 16)
	for i := range 2 {
		cfg := memberlist.DefaultLocalConfig()
		cfg.Name = fmt.Sprintf("raw%d", i)
		cfg.BindAddr, cfg.BindPort, cfg.AdvertisePort = "127.0.0.1", 0, 0
		cfg.LogOutput = io.Discard
		cfg.Delegate = rawDelegate{got: got}
		m, err := memberlist.Create(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = m.Shutdown() }()
		nodes = append(nodes, m)
	}
	if _, err := nodes[1].Join([]string{nodes[0].LocalNode().Address()}); err != nil {
		b.Fatal(err)
	}
	target := nodes[1].LocalNode()
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := nodes[0].SendBestEffort(target, []byte("invalidate k")); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(time.Second):
			continue // UDP may drop; a lost sample is not a latency
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}
