package l2_test

import (
	"testing"

	"github.com/strata-cache/strata/l2"
)

// TestReview11PreviousReaderDeletesFingerprintedEntries: the previous
// build's Decode (0ff67de) rejects any flag bit outside FlagNegative|FlagTags
// as corrupt, and its tiered layer deletes corrupt entries. Every entry this
// build writes carries FlagType (typeFingerprint is never 0), so during the
// rolling upgrade to this build the old replicas delete every entry the new
// ones write — the churn between builds issue 15 set out to end, caused by
// the upgrade itself. (Checked by hand: 0ff67de's l2.Decode of
// Envelope{Type: 12345, ...}.Encode() returns ErrCorrupt.)
func TestReview11PreviousReaderDeletesFingerprintedEntries(t *testing.T) {
	const previousKnownFlags = l2.FlagNegative | l2.FlagTags
	e := l2.Envelope{Type: 12345, Version: 5, FreshUntil: 1e15, StaleUntil: 1e15, Payload: []byte("v")}
	b := e.Encode()
	if flags := b[3]; flags&^previousKnownFlags != 0 {
		t.Errorf("flags %#x: the previous build reads this entry as corrupt and deletes it; "+
			"a reader that knows FlagType must ship (and be rolled out) before a writer that sets it", flags)
	}
}
