package scheduler

import (
	"slices"
	"testing"
	"time"

	"github.com/airut/airut/internal/config"
)

// TestNextRunAcrossDST: schedules are read on the zone's wall clock, as
// Vixie cron does: a time skipped by the spring-forward runs right after
// the change, a time repeated by the fall-back runs once, and an hourly
// schedule runs once an hour of wall clock.
func TestNextRunAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cron string
		from       time.Time
		want       []string // UTC
	}{
		// 2026-03-29 02:00 CET → 03:00 CEST: 02:30 does not exist that day.
		{"spring forward, skipped time", "30 2 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, berlin),
			[]string{"2026-03-29 01:30", "2026-03-30 00:30", "2026-03-31 00:30"}},
		// 2026-10-25 03:00 CEST → 02:00 CET: 02:30 comes twice, runs once.
		{"fall back, repeated time", "30 2 * * *", time.Date(2026, 10, 24, 12, 0, 0, 0, berlin),
			[]string{"2026-10-25 00:30", "2026-10-26 01:30"}},
		{"fall back, from inside the repeated hour", "30 2 * * *", time.Date(2026, 10, 25, 1, 10, 0, 0, time.UTC),
			[]string{"2026-10-26 01:30"}},
		{"daily at 09:00 across spring forward", "0 9 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, berlin),
			[]string{"2026-03-29 07:00", "2026-03-30 07:00"}},
		{"hourly across fall back", "15 * * * *", time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC),
			[]string{"2026-10-25 00:15", "2026-10-25 02:15", "2026-10-25 03:15"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := config.ParseCron(tt.cron, berlin)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			at := tt.from
			for range tt.want {
				at = nextRun(spec, at)
				got = append(got, at.UTC().Format("2006-01-02 15:04"))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("runs: got %v; want %v", got, tt.want)
			}
		})
	}
}
