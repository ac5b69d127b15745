package bus

import (
	"math"
	"math/bits"

	"github.com/strata-cache/strata/coherence"
)

// part is one message's share of an invalidation's items.
type part struct {
	items    []string
	tooLarge bool // one item, or the message without items, exceeds the limit
}

// splitItems cuts items into parts of at most coherence.MaxItems items whose encoded
// size is at most budget bytes. An item larger than budget is a part of its
// own, marked too large. There is always at least one part.
func splitItems(items []string, budget int) []part {
	if budget < 0 {
		return []part{{items: items, tooLarge: true}}
	}
	var parts []part
	start, size := 0, 0
	for i, it := range items {
		n := itemLen(it)
		if i > start && (i-start == coherence.MaxItems || size+n > budget || n > budget) {
			parts = append(parts, part{items: items[start:i]})
			start, size = i, 0
		}
		if n > budget {
			parts = append(parts, part{items: items[i : i+1], tooLarge: true})
			start = i + 1
			continue
		}
		size += n
	}
	if start < len(items) || len(parts) == 0 {
		parts = append(parts, part{items: items[start:]})
	}
	return parts
}

// itemBudget is how many bytes of encoded items a message like m may carry
// within coherence.MaxMessageSize: everything else is set aside at its largest (every
// varint at full width, an item count of coherence.MaxItems, the MAC).
func itemBudget(m *coherence.Message, key []byte) int {
	widest := *m
	widest.Epoch, widest.Seq, widest.Version, widest.SentAt = math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MinInt64
	widest.Items = nil // encoded as a one-byte count
	return coherence.MaxMessageSize - (len(coherence.Encode(&widest, key)) - 1 + uvarintLen(coherence.MaxItems))
}

// itemLen is the encoded size of one item.
func itemLen(it string) int { return uvarintLen(uint64(len(it))) + len(it) }

// uvarintLen is the encoded size of x as a uvarint: 7 bits a byte.
func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func longest(items []string) int {
	n := 0
	for _, it := range items {
		n = max(n, len(it))
	}
	return n
}
