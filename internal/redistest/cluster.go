package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterCreateTimeout bounds `redis-cli --cluster create`, which itself
	// polls once a second until the nodes agree on the configuration.
	clusterCreateTimeout = 60 * time.Second
	// clusterReadyTimeout bounds the wait for every node to report a
	// healthy cluster after creation.
	clusterReadyTimeout = 30 * time.Second
	// clusterSlots is the fixed number of hash slots in Redis Cluster.
	clusterSlots = 16384
)

// Cluster is a Redis Cluster of real redis-server processes.
type Cluster struct {
	// Masters are the nodes serving hash slots.
	Masters []*Server
	// Replicas are the replica nodes (see WithReplicas); empty by default.
	Replicas []*Server

	password string
}

// StartCluster starts masters cluster-enabled nodes (at least 3, as
// redis-cli requires), plus WithReplicas replicas per master, creates the
// cluster with `redis-cli --cluster create`, and waits until every node
// reports cluster_state:ok with all 16384 slots assigned and every replica
// is in sync with its master.
func StartCluster(t testing.TB, masters int, opts ...Option) *Cluster {
	t.Helper()
	cfg := newConfig(opts)
	if masters < 3 || cfg.replicas < 0 {
		t.Fatalf("redistest: StartCluster needs at least 3 masters and no negative replica count (got %d masters, %d replicas)", masters, cfg.replicas)
	}
	serverBin := lookBinary(t, "redis-server")
	cliBin := lookBinary(t, "redis-cli")
	nodes := make([]*Server, masters*(1+cfg.replicas))
	for i := range nodes {
		nodes[i] = startServer(t, serverBin, cfg, true)
	}
	createCluster(t, cliBin, nodes, cfg)
	c := &Cluster{password: cfg.password()}
	var problem string
	ready := poll(clusterReadyTimeout, func() bool {
		c.Masters, c.Replicas, problem = classify(nodes)
		if problem == "" && len(c.Masters) != masters {
			problem = fmt.Sprintf("%d masters, want %d", len(c.Masters), masters)
		}
		return problem == ""
	})
	if !ready {
		t.Fatalf("redistest: cluster not ready within %v: %s", clusterReadyTimeout, problem)
	}
	return c
}

// createCluster runs `redis-cli --cluster create` over all nodes; redis-cli
// assigns the slots, introduces the nodes and attaches the replicas.
func createCluster(t testing.TB, cliBin string, nodes []*Server, cfg config) {
	t.Helper()
	args := []string{"--cluster", "create"}
	for _, n := range nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.replicas), "--cluster-yes")
	if pw := cfg.password(); pw != "" {
		args = append(args, "-a", pw, "--no-auth-warning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	cmd.SysProcAttr = sysProcAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// classify sorts the nodes by role and returns a description of the first
// thing that is not ready yet, or "" when the whole cluster is healthy.
func classify(nodes []*Server) (masters, replicas []*Server, problem string) {
	for _, n := range nodes {
		if p := clusterProblem(n, len(nodes)); p != "" {
			return nil, nil, p
		}
		repl, err := n.info("replication")
		if err != nil {
			return nil, nil, fmt.Sprintf("%s: INFO replication: %v", n.Addr(), err)
		}
		switch infoField(repl, "role") {
		case "master":
			masters = append(masters, n)
		case "slave":
			if st := infoField(repl, "master_link_status"); st != "up" {
				return nil, nil, fmt.Sprintf("%s: master_link_status:%s", n.Addr(), st)
			}
			replicas = append(replicas, n)
		default:
			return nil, nil, fmt.Sprintf("%s: unknown role in %q", n.Addr(), repl)
		}
	}
	return masters, replicas, ""
}

// clusterProblem checks one node's view of the cluster: state ok, every
// slot assigned and every other node known.
func clusterProblem(n *Server, total int) string {
	v, err := n.do("CLUSTER", "INFO")
	if err != nil {
		return fmt.Sprintf("%s: CLUSTER INFO: %v", n.Addr(), err)
	}
	info, _ := v.(string)
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
		"cluster_known_nodes":    strconv.Itoa(total),
	}
	for key, val := range want {
		if got := infoField(info, key); got != val {
			return fmt.Sprintf("%s: %s:%s, want %s", n.Addr(), key, got, val)
		}
	}
	return ""
}

// Addrs returns the addresses of all nodes, masters first.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, 0, len(c.Masters)+len(c.Replicas))
	for _, n := range c.Masters {
		addrs = append(addrs, n.Addr())
	}
	for _, n := range c.Replicas {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// Client returns a new go-redis cluster client seeded with all node
// addresses, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Password: c.password})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
