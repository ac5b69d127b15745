package l2_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// Regression (review 8, a suspicion): with a caller's client, each Health
// call PINGed every server, and a PING outlasting HealthTimeout ran on in
// the background; probes against a stalled server piled them up. Now a
// server with a PING unanswered gets no other until it answers.
func TestReview8CallerHealthSendsOnePingAtATime(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 5 * time.Second, PoolSize: 4})
	t.Cleanup(func() { _ = c.Close() })
	st := openStore(t, l2.Config{Client: c, HealthTimeout: 100 * time.Millisecond})
	srv.Pause()
	first := st.Health()
	second := st.Health()
	if len(first) != 1 || first[0].Serving || len(second) != 1 || second[0].Reason != "an earlier PING is still unanswered" {
		t.Fatalf("Health against a paused server: %+v then %+v; want the second to wait for the first's PING", first, second)
	}
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { h := st.Health(); return len(h) == 1 && h[0].Serving }, "serving once resumed")
}
