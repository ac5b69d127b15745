package l2_test

import (
	"testing"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// Write-behind needs XAUTOCLAIM: Redis 6.2 or later.
func TestStreamsVersion(t *testing.T) {
	for v, ok := range map[string]bool{"7.0.15": true, "6.2.0": true, "6.0.16": false, "5.0.7": false, "junk": false, "10.1": true} {
		if err := l2.StreamsVersion(v); (err == nil) != ok {
			t.Errorf("StreamsVersion(%q) = %v, want ok %v", v, err, ok)
		}
	}
	st := openStore(t, l2.Config{Addrs: []string{redistest.Start(t).Addr()}})
	if err := st.StreamsSupported(t.Context()); err != nil {
		t.Errorf("the test server: %v", err)
	}
}
