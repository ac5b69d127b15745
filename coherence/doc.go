// Package coherence is the wire format of Strata's invalidations: the
// [Message] every replica sends over Redis pub/sub and memberlist gossip
// when it changes or invalidates keys, its binary encoding ([Encode],
// [Decode]), the limits a receiver enforces, and the counters a replica
// keeps about its traffic ([Stats]).
//
// A producer outside Strata (a database change-data-capture consumer, a
// script, a port in another language) builds and sends messages with it;
// ExampleEncode walks through publishing, sequencing, heartbeats and
// authentication, with a test vector. The bus that sends and receives them
// on a replica is internal to Strata (tiered.Client runs it); a Go program
// that has a tiered.Client calls Client.Invalidate instead, which also
// deletes the L2 entries.
//
// # Messages
//
// A Message names what it invalidates by its [Kind]: keys ([KindKeys]),
// tags ([KindTags]), a Redis glob over keys ([KindPattern]) or a whole
// namespace ([KindClear]), all within one Namespace. [KindHeartbeat] carries
// no invalidation, only the sender's latest Seq, so that receivers notice a
// lost message; [KindAck] confirms one sent with AckWanted.
//
//	b := coherence.Encode(&coherence.Message{
//		Origin: "cdc-1", Epoch: startNanos, Seq: next(),
//		Kind: coherence.KindKeys, Namespace: "users", Items: []string{"42"},
//	}, invalidationKey) // nil: no MAC
//	err := rdb.Publish(ctx, "strata:invalidations", b).Err()
//
// Receivers de-duplicate by (Origin, Epoch, Seq) and treat a hole in Seq as
// a lost message, which makes them drop their whole L1. A message drops L1
// copies only: the L2 entries must be deleted as well.
//
// # Limits
//
// A message is at most [MaxMessageSize] bytes with at most [MaxItems] items
// and an Origin of at most [MaxOriginLen] bytes; [Decode] rejects larger
// ones with [ErrMalformed], so a larger invalidation is split into several
// messages, each with its own Seq. An empty Origin, or a Seq of 0 on
// anything but a heartbeat or an ack, is malformed too. With a key, Decode
// accepts only messages whose MAC verifies ([ErrUnauthenticated]).
//
// # Epochs
//
// A receiver tracks one epoch per Origin, the largest heard. A message of a
// smaller epoch (a delayed message of the origin's previous process) is
// applied, but it does not replace the tracked state and does not count
// toward gaps; only once the tracked epoch has been silent for the link
// timeout (1.5 s) does a smaller epoch take its place. Strata's buses use
// their start time in Unix nanoseconds with the low 16 bits random, made
// odd. A producer with random epochs still works: after a restart its
// messages are applied but not de-duplicated or checked for gaps until its
// previous epoch has been silent for the link timeout.
//
// # Wire format
//
// Version 1 (all varints are Go's encoding/binary varints):
//
//	magic     2 bytes  0x53 0x49 ("SI")
//	format    1 byte   1
//	kind      1 byte   Kind
//	flags     1 byte   bit 0: a MAC follows the body; bit 1: ack wanted; bit 2: L2 missed;
//	                   bit 3: an L2 server follows the items (only with bit 2); other bits zero
//	epoch     uvarint  increasing per process start of the origin (see Epochs)
//	seq       uvarint
//	version   uvarint
//	sent      varint   Unix nanoseconds
//	origin    uvarint length + bytes
//	namespace uvarint length + bytes
//	items     uvarint count, then each: uvarint length + bytes
//	server    uvarint length + bytes; only with flag bit 3 (at most MaxOriginLen)
//	mac       16 bytes HMAC-SHA-256 of everything before it, truncated; only with flag bit 0
//
// A producer without a key (a CDC consumer in another language, say) sends
// flags 0 and no MAC; receivers configured with a key drop such messages.
package coherence
