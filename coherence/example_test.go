package coherence_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/strata-cache/strata/coherence"
)

// ExampleEncode builds the invalidation a producer outside Strata (a database
// change-data-capture consumer, say, possibly in another language) sends:
// the wire format is documented in the package doc (doc.go), and the bytes
// printed below are a test vector for a port.
//
// Publishing: the message goes, as a binary payload, to the Redis pub/sub
// channel "<l2 prefix>:invalidations" on the replicas' L2 Redis; with the
// default l2.Config.Prefix that is "strata:invalidations". On a Redis Cluster
// PUBLISH on any node reaches every subscriber; with consistent-hashed shards
// (go-redis Ring) the channel lives on one shard, so PUBLISH on every shard
// (the others have no subscribers). A message drops L1 copies only: the L2
// entries must be deleted too (Client.Invalidate does both).
//
// Sequencing: each producer uses a stable Origin, unique among producers and
// replica NodeIDs; an Epoch, new at every process start and larger than the
// previous one (the start time in Unix nanoseconds, say; see Message); and a
// Seq counting from 1 within the epoch, without holes. Receivers
// de-duplicate by (Origin, Epoch, Seq), and treat a hole as a lost message:
// when a sequence stays missing for a quarter of a second after a later one
// (or a heartbeat) named it, every receiver drops all of its L1.
//
// Large invalidations: a message may be at most MaxMessageSize bytes with at
// most MaxItems items; receivers drop larger ones (and see the sequence as
// lost). Split a larger invalidation into several messages, each with its
// own Seq, as Strata's replicas do.
//
// Heartbeats: a lost message is noticed only once something later names its
// sequence, so a producer that wants gap detection for its own messages
// sends a KindHeartbeat carrying its latest Seq (0 before the first message)
// at least every second; Strata's replicas send theirs every 500 ms.
// Receivers forget an origin silent for 15 s.
//
// Authentication: when the replicas set tiered.Config.InvalidationKey, pass
// the same key to Encode; receivers with a key drop messages without a
// valid MAC.
func ExampleEncode() {
	m := &coherence.Message{
		Origin:    "cdc-1", // stable across restarts
		Epoch:     1,       // in production: larger at every process start
		Seq:       1,       // 1, 2, 3, ... without holes
		Kind:      coherence.KindKeys,
		Namespace: "users", // the Cache's namespace
		Items:     []string{"42"},
		// Version and SentAt (Unix nanoseconds, for lag metrics) may stay
		// zero for KindKeys.
	}
	b := coherence.Encode(m, nil) // nil: no InvalidationKey
	fmt.Printf("% x\n", b)

	got, err := coherence.Decode(b, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("origin:", got.Origin)
	fmt.Println("epoch:", got.Epoch, "seq:", got.Seq)
	fmt.Println("kind:", got.Kind)
	fmt.Println("namespace:", got.Namespace)
	fmt.Println("items:", got.Items)

	// Replicas configured with a key refuse it.
	_, err = coherence.Decode(b, []byte("shared-invalidation-key"))
	fmt.Println(errors.Is(err, coherence.ErrUnauthenticated))

	// The heartbeat that follows names Seq 1, so a receiver that missed the
	// message notices the hole.
	hb := coherence.Encode(&coherence.Message{Origin: "cdc-1", Epoch: 1, Seq: 1, Kind: coherence.KindHeartbeat}, nil)
	got, err = coherence.Decode(hb, nil)
	fmt.Println(got.Kind, got.Seq, err)
	// Output:
	// 53 49 01 01 00 01 01 00 00 05 63 64 63 2d 31 05 75 73 65 72 73 01 02 34 32
	// origin: cdc-1
	// epoch: 1 seq: 1
	// kind: keys
	// namespace: users
	// items: [42]
	// true
	// heartbeat 1 <nil>
}
