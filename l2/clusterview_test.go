package l2

import "testing"

// dialAddr maps CLUSTER SLOTS addresses as go-redis does.
func TestDialAddr(t *testing.T) {
	for _, tc := range []struct{ addr, origin, want string }{
		{"10.0.0.2:7001", "10.0.0.1:7000", "10.0.0.2:7001"},
		{"127.0.0.1:7001", "127.0.0.1:7000", "127.0.0.1:7001"},
		{"127.0.0.1:7001", "10.0.0.1:7000", "10.0.0.1:7001"},
		{"127.0.0.1:7001", "redis.internal:7000", "redis.internal:7001"},
		{"127.0.0.1:7001", "localhost:7000", "127.0.0.1:7001"},
		{"10.0.0.2:0", "10.0.0.1:6380", "10.0.0.2:6380"},
		{"not an address", "10.0.0.1:7000", "not an address"},
	} {
		if got := dialAddr(tc.addr, tc.origin); got != tc.want {
			t.Errorf("dialAddr(%q, %q) = %q, want %q", tc.addr, tc.origin, got, tc.want)
		}
	}
}
