module github.com/strata-cache/strata/benchmarks

go 1.26.0

replace github.com/strata-cache/strata => ../
