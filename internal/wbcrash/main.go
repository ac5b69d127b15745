// Command wbcrash is a write-behind replica for the crash test
// (tiered.TestWriteBehindSurvivesKilledReplica): it reads "set KEY VALUE"
// lines on stdin, answers "ack KEY VALUE" once Set returned (the write is
// acknowledged), and flushes into a Redis hash sink. With -block-after N its
// Flush calls after the first N print "flushing" and block until the
// process is killed (with -written, after writing their batch).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/internal/wbsink"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

func main() {
	addr := flag.String("redis", "", "Redis address (cache and sink)")
	node := flag.String("node", "crash", "NodeID")
	ns := flag.String("ns", "crash", "namespace")
	blockAfter := flag.Int("block-after", -1, "Flush calls after this many block forever (-1: never)")
	written := flag.Bool("written", false, "a blocking Flush writes its batch first (killed before the acknowledgement)")
	batch := flag.Int("batch", 5, "BatchSize")
	claimIdle := flag.Duration("claim-idle", 200*time.Millisecond, "WriteBehind.ClaimIdle")
	flag.Parse()
	if err := run(*addr, *node, *ns, *blockAfter, *written, *batch, *claimIdle, os.Stdin, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(addr, node, ns string, blockAfter int, written bool, batch int, claimIdle time.Duration, in io.Reader, out io.Writer) error {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	sink := wbsink.New(rdb, ns)
	calls := 0
	flush := func(ctx context.Context, ws []tiered.Write[string]) error {
		calls++
		if blockAfter >= 0 && calls > blockAfter {
			if written {
				if err := sink.Flush(ctx, ws); err != nil {
					return err
				}
			}
			fmt.Fprintln(out, "flushing", len(ws))
			select {} // until killed
		}
		return sink.Flush(ctx, ws)
	}
	c, err := tiered.NewClient(ctx, tiered.Config{NodeID: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Redis: l2.Config{Addrs: []string{addr}, Timeout: time.Second}})
	if err != nil {
		return err
	}
	defer c.Close()
	cache, err := tiered.NewCache(c, ns, tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
		Flush: flush, BatchSize: batch, Interval: 5 * time.Millisecond, ClaimIdle: claimIdle}})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "set" {
			fmt.Fprintln(out, "err bad command")
			continue
		}
		if err := cache.Set(ctx, f[1], f[2]); err != nil {
			fmt.Fprintln(out, "err", err)
			continue
		}
		fmt.Fprintln(out, "ack", f[1], f[2])
	}
	return sc.Err()
}
