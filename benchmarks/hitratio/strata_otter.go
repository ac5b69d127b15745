//go:build strataotter

// TODO(issue 16): drop this build constraint once main has
// tiered.L1Options.Engine and l1.Otter; until then the package builds
// without the strata-otter policy (go test -tags strataotter tries it).

package hitratio

import (
	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/tiered"
)

func init() { registry["strata-otter"] = replayStrataOtter }

// replayStrataOtter is replayStrata with the otter engine under L1.
func replayStrataOtter(w *workload, capacity int) (int64, error) {
	return replayStrataWith(w, capacity, func(o *tiered.L1Options) { o.Engine = l1.Otter })
}
