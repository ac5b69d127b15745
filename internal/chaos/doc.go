// Package chaos holds Strata's chaos soak (soak_test.go, `make soak`):
// replicas, Redis servers, faults and a versioned database in one process.
package chaos
