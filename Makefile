# Strata's developer entry points. `make test` is what CI runs (.ci/run).

GO    ?= go
# BENCH selects benchmarks by regexp and COUNT repeats them, for example:
#   make bench BENCH=L1Hit COUNT=6 > new.txt   (then benchstat old.txt new.txt)
BENCH ?= .
COUNT ?= 1
# STRESS_COUNT repeats the stress runs; STRESS_DURATION is each convergence
# run's length; STRESS_LOAD is how many busy loops load the CPUs meanwhile.
STRESS_COUNT ?= 5
STRESS_DURATION ?= 4s
STRESS_LOAD ?= 2
# FUZZTIME is how long make fuzz runs each fuzz target (make test: 5s each);
# FUZZPARALLEL is its number of workers: one leaves the other cores alone.
# FUZZMINIMIZETIME bounds the shrinking of each new input: go's default, 60s,
# can spend a whole run shrinking one long input instead of fuzzing.
FUZZTIME ?= 30s
FUZZPARALLEL ?= 1
FUZZMINIMIZETIME ?= 5s

# SOAK is the chaos soak's length (both phases: a Ring, then a Cluster);
# SOAK_SEED reruns one (0 picks one; the run prints it); SOAK_TIMEOUT is
# go test's -timeout (raise it with SOAK past 20m).
SOAK ?= 5m
SOAK_SEED ?= 0
SOAK_TIMEOUT ?= 30m

# MODULES are the workspace's modules (go.work): the library and, beside
# it, the modules whose dependencies the library must not carry (examples).
MODULES := $(shell $(GO) list -m -f '{{.Dir}}')

# BENCH_PKGS are the directories of the packages that have benchmarks.
BENCH_PKGS = $(shell grep -rl --include='*_test.go' '^func Benchmark' . | xargs -n1 dirname | sort -u)

.DEFAULT_GOAL := test
# BENCH_REPORT_COUNT repeats every benchmark of make bench-report (the
# report takes medians); BENCH_REPORT_TIME is each one's -benchtime;
# BENCH_MACHINE is a note on the machine for BENCHMARKS.md.
BENCH_REPORT_COUNT ?= 3
BENCH_REPORT_TIME ?= 1s
BENCH_MACHINE ?= $(shell nproc) cores, $(shell uname -sr)
BENCH_OUT ?= docs/bench
RACE_TIMEOUT ?= 20m
# HITRATIO_RUNS is how many replays of each real cache make bench-report
# averages: ristretto samples its eviction candidates at random, so one
# replay of a small cache moves by ±5-10% (LIRS GLI at 250 entries). A
# short trace gets more, until HITRATIO_REQUESTS requests in all (GLI: 998
# replays, Corda: 45), where a replay is cheap and the noisiest: otter at
# 100 entries on Corda ends some replays at 1-13% instead of ~30%.
# A point whose replays are bimodal (that otter at 100 entries on Corda)
# is replayed again while its mean's standard error is over
# HITRATIO_MAX_REL_ERR of it, until HITRATIO_MAX_REQUESTS requests at the
# point: 45 replays left strata-otter's mean 2.2 points off the one of 443.
HITRATIO_RUNS ?= 3
HITRATIO_REQUESTS ?= 6000000
HITRATIO_MAX_REL_ERR ?= 0.01
HITRATIO_MAX_REQUESTS ?= 70000000

.PHONY: deps test tidy bench bench-report hitratio-check convergence-check stress fuzz fuzz-short soak fmt vet

# deps makes sure redis-server and redis-cli are on PATH: the tests start their
# own redis-server processes on free loopback ports (and build a Redis Cluster
# with redis-cli), so nothing else about the host's Redis is touched.
deps:
	@if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then \
		exit 0; \
	elif command -v apt-get >/dev/null 2>&1; then \
		sudo=; if [ "$$(id -u)" -ne 0 ]; then sudo=sudo; fi; \
		echo "deps: redis-server or redis-cli missing; installing redis-server and redis-tools with apt-get"; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools; \
	else \
		echo "deps: redis-server and redis-cli (Redis 7.0 or newer) are needed on PATH for the tests." >&2; \
		echo "      Install them with your package manager, for example:" >&2; \
		echo "        macOS:   brew install redis" >&2; \
		echo "        Fedora:  sudo dnf install redis" >&2; \
		echo "        Alpine:  apk add redis" >&2; \
		echo "      or build from https://redis.io/docs/latest/operate/oss_and_stack/install/" >&2; \
		exit 1; \
	fi

# test checks every module is tidy, runs every fuzz target for 5 s, the
# hit-ratio check and the convergence property test without the race
# detector, the race-enabled suite against real Redis, then every benchmark
# once so they cannot rot, in every module of the workspace.
#
# The race-enabled suite is one go test of every module's packages (the
# workspace resolves them all), tiered's first: go test builds and starts
# packages in the order they are listed, so tiered's, the longest run (about
# 6.5 minutes on 2 cores, most of it waiting on timeouts, pauses and
# gossip), starts as soon as the library is built, and the other packages
# build and run beside it. The benchmarks then run from the same
# race-enabled test binaries, already built: a build without -race of
# their own cost CI, which starts with an empty build cache, about 100 s
# more of compiling (the demos' and peers' dependencies, modernc.org/sqlite,
# OpenTelemetry and rueidis among them, built twice). They are a go test of
# their own because go test runs packages one at a time when -bench is set.
# RACE_TIMEOUT is go test's -timeout per package, past go test's default of
# 10 minutes for a loaded CI machine.
test: deps tidy
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory hitratio-check
	@$(MAKE) --no-print-directory convergence-check
	@$(GO) test -race -count=1 -timeout $(RACE_TIMEOUT) ./tiered/ $(addsuffix /...,$(MODULES))
	@$(GO) test -race -count=1 -run '^$$' -bench . -benchtime 1x $(BENCH_PKGS)

# hitratio-check replays a prefix of each trace in ../shared/traces through
# Strata's L1 and the engine under it, and fails where Strata keeps less
# than 0.98 of the engine's hit ratio. Without the race detector: Strata's
# Get under it is too slow for a replay (the race suite runs the replay
# code's unit tests).
hitratio-check:
	@cd benchmarks && $(GO) test -count=1 -run '^TestStrataKeepsEngineHitRatio$$' ./hitratio

# convergence-check runs the convergence property test (guarantee 13, every
# topology and channel) without the race detector: about 25 times as many
# operations a second as under it, so its finale races each key 50 rounds
# (the race-enabled suite runs it too, with 10).
convergence-check: deps
	@$(GO) test -count=1 -run '^TestConvergenceProperty$$' ./tiered

# tidy fails when a module's go.mod or go.sum is not what go mod tidy makes,
# or when the library's module graph holds a demo's dependency.
tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy -diff) || { echo "tidy: $$m: run go mod tidy there" >&2; exit 1; }; done
	@for dep in github.com/alicebob/miniredis/v2 modernc.org/sqlite go.opentelemetry.io/otel; do \
		GOWORK=off $(GO) mod why -m $$dep | grep -q 'does not need' || { echo "tidy: the library needs $$dep; it belongs in examples/ or otelcache/" >&2; exit 1; }; done

# stress repeats the convergence property test (guarantee 13: replicas end up
# answering what L2 holds, L2 what the database holds) and the invalidation
# regression tests, longer and under CPU load from busy loops, race-enabled.
stress: deps
	@pids=; for i in $$(seq $(STRESS_LOAD)); do sh -c 'while :; do :; done' & pids="$$pids $$!"; done; \
	log=$$(mktemp); trap 'kill $$pids 2>/dev/null; rm -f $$log' EXIT INT TERM; \
	$(GO) test -race -count=$(STRESS_COUNT) -timeout 60m -v \
		-run 'TestConvergenceProperty|TestConcurrentSets|TestTagInvalidation|TestInvalidationEnds|TestSetRacing|TestReset' \
		./tiered/ -args -convergence.duration=$(STRESS_DURATION) -convergence.finale=200 > $$log 2>&1; rc=$$?; \
	grep -E '^(--- FAIL|FAIL|ok)|seed [0-9]+:|not converged|failed;' $$log; exit $$rc

# fuzz runs every fuzz target (each func FuzzXxx in a package's test files,
# found afresh each time) for FUZZTIME, one after another: go test -fuzz
# takes one package and one target. A crasher lands in the package's
# testdata/fuzz/FuzzXxx/, where it stays as a regression input.
#
# Go 1.26's fuzzing coordinator can fail a run that found nothing with a
# bare "context deadline exceeded" when -fuzztime ends while its worker is
# mid-call (go.dev/issue/75804, fixed in Go 1.27; it failed
# FuzzEnvelopeRoundTrip once here, the worker at 0 execs/s for its last 3 s
# on a busy VM). Such a failure, with no failing input written, is reported
# and the target's corpus replayed instead, which must pass; any other
# failure fails make fuzz.
fuzz:
	@for m in $(MODULES); do (cd $$m && \
		for f in $$($(GO) list -f '{{$$d := .Dir}}{{range .TestGoFiles}}{{$$d}}/{{.}} {{end}}{{range .XTestGoFiles}}{{$$d}}/{{.}} {{end}}' ./...); do \
			for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
				echo "fuzz: $$(dirname $$f) $$t for $(FUZZTIME)"; \
				log=$$(mktemp); \
				$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) \
					-parallel $(FUZZPARALLEL) $$(dirname $$f) > $$log 2>&1; rc=$$?; cat $$log; \
				if [ $$rc -ne 0 ]; then \
					if grep -q '^    context deadline exceeded$$' $$log && ! grep -q 'Failing input written' $$log; then \
						echo "fuzz: $$t: the coordinator missed its own deadline (go.dev/issue/75804), no failing input; replaying the corpus"; \
						$(GO) test -count=1 -run "^$$t\$$" $$(dirname $$f) || { rm -f $$log; exit 1; }; \
					else rm -f $$log; exit 1; fi; \
				fi; \
				rm -f $$log; \
			done; \
		done) || exit 1; done

# fuzz-short is fuzz at 5 s a target, as make test runs it.
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# soak runs the chaos soak (internal/chaos, issue 15): 3 replicas under a
# mixed workload while a seeded scheduler kills, pauses and restarts Redis
# servers, kills pub/sub connections, cuts, loses and delays gossip, slows
# and fails the loader and replaces replicas; it prints the report (and
# writes it as JSON under the temp dir) and fails on any stale read beyond
# DESIGN.md's bounds, divergence, extra load, Get error or lost write.
# `make test` runs it for its default minute.
soak: deps
	$(GO) test -race -count=1 -v -run '^TestChaosSoak$$' -timeout $(SOAK_TIMEOUT) ./internal/chaos \
		-args -soak.duration=$(SOAK) -soak.seed=$(SOAK_SEED)

bench:
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(COUNT) ./...) || exit 1; done

# bench-report runs the benchmarks module side by side with the peers
# (BENCH_REPORT_COUNT times each), replays every trace in full, and writes
# BENCHMARKS.md's tables and the plots under $(BENCH_OUT) from one run;
# the raw output stays in $(BENCH_OUT)/bench.txt and hitratio.json. Run it
# on an otherwise idle machine: it takes about 50 minutes.
bench-report: deps
	@mkdir -p $(BENCH_OUT)
	cd benchmarks && $(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_REPORT_COUNT) \
		-benchtime $(BENCH_REPORT_TIME) -timeout 60m . | tee ../$(BENCH_OUT)/bench.txt
	cd benchmarks && $(GO) run ./hitratio/cmd/hitratio -runs $(HITRATIO_RUNS) -min-requests $(HITRATIO_REQUESTS) -max-rel-err $(HITRATIO_MAX_REL_ERR) -max-requests $(HITRATIO_MAX_REQUESTS) -out ../$(BENCH_OUT)/hitratio.json
	$(GO) run ./benchmarks/cmd/benchreport -bench $(BENCH_OUT)/bench.txt -hitratio $(BENCH_OUT)/hitratio.json \
		-md BENCHMARKS.md -plots $(BENCH_OUT) -machine "$(BENCH_MACHINE)"

fmt:
	@for m in $(MODULES); do (cd $$m && $(GO) fmt ./...) || exit 1; done

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done
