package coherence_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/strata-cache/strata/coherence"
)

// A receiver configured with the replicas' InvalidationKey accepts only
// messages whose MAC verifies under it; Decode never panics on bad input.
func ExampleDecode() {
	key := []byte("shared-invalidation-key")
	b := coherence.Encode(&coherence.Message{
		Origin: "cdc-1", Epoch: 1, Seq: 7,
		Kind: coherence.KindKeys, Namespace: "users", Items: []string{"42", "43"},
	}, key)

	m, err := coherence.Decode(b, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Origin, m.Seq, m.Kind, m.Namespace, m.Items)

	_, err = coherence.Decode(b, []byte("another key"))
	fmt.Println(errors.Is(err, coherence.ErrUnauthenticated))
	_, err = coherence.Decode([]byte("not a message"), key)
	fmt.Println(errors.Is(err, coherence.ErrMalformed))
	// Output:
	// cdc-1 7 keys users [42 43]
	// true
	// true
}

// The kinds of invalidation a Message carries. Each goes to every replica
// that caches the namespace; none of them touches L2.
func ExampleMessage() {
	msgs := []coherence.Message{
		{Kind: coherence.KindKeys, Namespace: "users", Items: []string{"42"}},
		{Kind: coherence.KindTags, Namespace: "products", Items: []string{"brand:acme"}},
		{Kind: coherence.KindPattern, Namespace: "carts", Items: []string{"eu:*"}},
		{Kind: coherence.KindClear, Namespace: "flags", Version: 8}, // the namespace's new version
	}
	for i := range msgs {
		m := &msgs[i]
		m.Origin, m.Epoch, m.Seq = "cdc-1", 1, uint64(i+1) // one sequence across kinds
		got, err := coherence.Decode(coherence.Encode(m, nil), nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(got.Seq, got.Kind, got.Namespace, got.Items, got.Version)
	}
	// Output:
	// 1 keys users [42] 0
	// 2 tags products [brand:acme] 0
	// 3 pattern carts [eu:*] 0
	// 4 clear flags [] 8
}

// Kinds.Of reads one kind's count out of the bus's counters, as
// tiered.Client.BusStats returns them.
func ExampleKinds_Of() {
	s := coherence.Stats{AppliedByKind: coherence.Kinds{Keys: 120, Tags: 3, Clear: 1}}
	for _, k := range []coherence.Kind{coherence.KindKeys, coherence.KindTags, coherence.KindPattern, coherence.KindClear} {
		fmt.Println(k, s.AppliedByKind.Of(k))
	}
	// Output:
	// keys 120
	// tags 3
	// pattern 0
	// clear 1
}
