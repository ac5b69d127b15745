package hitratio

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// pairs are the ratios the table adds: Strata's hit ratio over its
// engine's, raw (otter both as Strata sizes it and as it sizes itself).
var pairs = [][2]string{{"strata", "ristretto"}, {"strata-otter", "otter-sized"}, {"strata-otter", "otter"}}

// WriteTable writes results as a Markdown table: one row per trace and
// capacity, a column per policy's hit ratio (in percent), then Strata over
// its raw engine where both were run.
func WriteTable(w io.Writer, results []Result) error {
	var policies []string
	type row struct {
		trace    string
		capacity int
	}
	var rows []row
	ratio := map[row]map[string]float64{}
	for _, r := range results {
		if !slices.Contains(policies, r.Policy) {
			policies = append(policies, r.Policy)
		}
		k := row{r.Trace, r.Capacity}
		if ratio[k] == nil {
			ratio[k] = map[string]float64{}
			rows = append(rows, k)
		}
		ratio[k][r.Policy] = r.Ratio
	}
	header := append([]string{"trace", "capacity"}, policies...)
	var shown [][2]string
	for _, p := range pairs {
		if slices.Contains(policies, p[0]) && slices.Contains(policies, p[1]) {
			shown = append(shown, p)
			header = append(header, p[0]+"/"+p[1])
		}
	}
	lines := []string{"| " + strings.Join(header, " | ") + " |", "|" + strings.Repeat("---|", len(header))}
	for _, k := range rows {
		cells := []string{k.trace, fmt.Sprint(k.capacity)}
		for _, p := range policies {
			cells = append(cells, percent(ratio[k], p))
		}
		for _, p := range shown {
			cells = append(cells, quotient(ratio[k], p[0], p[1]))
		}
		lines = append(lines, "| "+strings.Join(cells, " | ")+" |")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n")+"\n")
	return err
}

func percent(m map[string]float64, p string) string {
	v, ok := m[p]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", 100*v)
}

func quotient(m map[string]float64, a, b string) string {
	x, okA := m[a]
	y, okB := m[b]
	switch {
	case !okA || !okB:
		return "-"
	case y == 0 && x == 0:
		return "1.000"
	case y == 0:
		return "inf"
	}
	return fmt.Sprintf("%.3f", x/y)
}
