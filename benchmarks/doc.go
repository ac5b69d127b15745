// Package benchmarks measures Strata side by side with the caches its users
// choose between: raw ristretto v2 and otter v2, go-redis/cache v9, rueidis
// client-side caching, go-redis v9's own client-side cache and plain
// go-redis. It lives in a module of its own so that none of those peers
// enters the library's go.mod. See BENCHMARKS.md at the repository root.
package benchmarks
