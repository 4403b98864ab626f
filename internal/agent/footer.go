package agent

import (
	"fmt"
	"strings"
)

// Footer returns the line appended to a reply: the run's cost (left out on
// a subscription login, where the figure is notional) and how many web
// searches and fetches it made. It is "" when there is nothing to say.
func Footer(res Result, subscription bool) string {
	var parts []string
	if !subscription {
		parts = append(parts, "Cost: "+formatCost(res.CostUSD))
	}
	if res.WebSearches > 0 {
		parts = append(parts, plural(res.WebSearches, "web search", "web searches"))
	}
	if res.WebFetches > 0 {
		parts = append(parts, plural(res.WebFetches, "web fetch", "web fetches"))
	}
	if len(parts) == 0 {
		return ""
	}
	return "_" + strings.Join(parts, " · ") + "_"
}

func formatCost(usd float64) string {
	if usd > 0 && usd < 0.01 {
		return "<$0.01"
	}
	return fmt.Sprintf("$%.2f", usd)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
