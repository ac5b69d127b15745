// Package cluster is the memberlist membership of a service's replicas, used
// as Strata's gossip invalidation channel.
package cluster

// Config configures a replica's membership. The gossip channel itself is
// built by a later change; today a non-nil Config is rejected by
// tiered.NewClient rather than silently ignored.
type Config struct {
	// BindAddr is the "host:port" memberlist listens on; port 0 picks any free
	// port.
	BindAddr string
	// AdvertiseAddr is the "host:port" other replicas reach this one at. Empty
	// means the bound address.
	AdvertiseAddr string
	// Join lists "host:port" addresses of existing members to join at start.
	Join []string
	// SecretKey is an AES key (16, 24 or 32 bytes) that encrypts and
	// authenticates gossip; members without it are rejected. Nil means
	// unencrypted gossip.
	SecretKey []byte
}
