// Package cluster is the memberlist membership of a service's replicas,
// used as Strata's gossip channel for invalidation messages.
//
// Package tiered starts a [Node] for each Client when tiered.Config.Gossip is
// set (the node is named after the Client's NodeID) and sends invalidations
// over it beside Redis pub/sub; most programs only fill in a [Config] there.
// The package stands on its own too: any replicated service can use it to
// know its peers and pass them small messages.
//
// # Starting a node
//
// [Start] creates the memberlist node, joins the members listed in
// [Config].Join and returns once it has (or, with [Config].KeepJoining,
// at once, joining in the background). Every replica may share one seed
// list; listing its own address is harmless.
//
//	node, err := cluster.Start(cluster.Config{
//		BindAddr:  "0.0.0.0:7946",
//		Join:      []string{"api-0.api:7946", "api-1.api:7946"},
//		SecretKey: key, // 16, 24 or 32 bytes: AES-encrypted, authenticated gossip
//	}, "api-7", handle, onOverflow)
//	if err != nil {
//		return err
//	}
//	defer node.Close()
//	err = node.Broadcast(msg)
//
// # Messages
//
// [Node.Broadcast] sends a message to every other alive member, directly and
// again through gossip; [Node.SendTo] sends it to one. Messages are
// best-effort: a receiver may miss one and sees most broadcasts twice, so it
// must de-duplicate and detect gaps itself (Strata's bus numbers its
// messages and sends heartbeats for this). Received messages reach the
// handle func given to Start on one goroutine, in arrival order; when they
// arrive faster than it returns, up to [Config].QueueSize wait and the rest
// are dropped and reported to onOverflow.
//
// # Membership
//
// [Node.Members] lists the alive members, [Node.MemberStates] also those
// that left or died lately, and [Node.OnMembership] reports joins and
// departures as they happen. Names must be unique: Start fails with
// [ErrNameTaken] when a member of the cluster it joins has the name at
// another address, and [Node.Conflicts] counts the claims seen later. [Node.Stats] counts what was sent,
// received and dropped.
//
// # Defaults that matter
//
// The zero Config is usable: it binds [DefaultBindAddr] (0.0.0.0:7946,
// memberlist's port), starts a cluster of its own, gossips unencrypted, uses
// [ProfileLAN] timings (1 s probes, 200 ms gossip) and gives up joining
// after [DefaultJoinTimeout] (10 s). Set SecretKey whenever the bind address
// is reachable beyond loopback, and use [ProfileLocal] for replicas on one
// host and in tests.
package cluster
