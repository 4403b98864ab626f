package slack

import "github.com/slack-go/slack"

type slackSection = slack.SectionBlock

// RenderPlanForTest returns the plan message's text and the text of each
// of its section blocks.
func RenderPlanForTest(items []PlanItem) (string, []string) {
	text, blocks := renderPlan(items)
	var out []string
	for _, b := range blocks {
		if s, ok := b.(*slackSection); ok {
			out = append(out, s.Text.Text)
		}
	}
	return text, out
}
