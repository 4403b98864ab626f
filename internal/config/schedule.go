package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/shlex"
	"github.com/robfig/cron/v3"
)

// errCronFields is ParseCron's error for anything but five fields.
var errCronFields = errors.New("must be a 5-field cron expression (minute hour day month weekday)")

// cronStar is robfig/cron's marker of a field written "*" (its starBit):
// a day field so marked does not restrict the day.
const cronStar = 1 << 63

// ParseCron reads a 5-field cron expression with Vixie cron's semantics:
// when both day of month and day of week are restricted, a day matching
// either runs (a field beginning with "*", "*/2" included, restricts
// nothing, as in Vixie cron); 0 and 7 are Sunday; names (mon, jan) are
// accepted. Descriptors (@daily) and a TZ= prefix are not: the zone is
// the schedule's timezone key.
func ParseCron(expr string, loc *time.Location) (*cron.SpecSchedule, error) {
	fields := strings.Fields(expr)
	if len(fields) != 5 || strings.HasPrefix(expr, "@") {
		return nil, errCronFields
	}
	for _, f := range fields {
		if strings.HasPrefix(f, "TZ=") || strings.HasPrefix(f, "CRON_TZ=") {
			return nil, errCronFields
		}
	}
	dow, err := sundaySeven(fields[4])
	if err != nil {
		return nil, err
	}
	fields[4] = dow
	s, err := cron.ParseStandard(strings.Join(fields, " "))
	if err != nil {
		return nil, err
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("unexpected schedule type %T", s)
	}
	// robfig/cron counts "*/2" as a restriction; Vixie cron does not.
	if strings.HasPrefix(fields[2], "*") {
		spec.Dom |= cronStar
	}
	if strings.HasPrefix(fields[4], "*") {
		spec.Dow |= cronStar
	}
	if loc != nil {
		spec.Location = loc
	}
	return spec, nil
}

// sundaySeven rewrites the day-of-week field so that 7 (Sunday, as in
// Vixie cron) becomes 0, which is all robfig/cron knows.
func sundaySeven(field string) (string, error) {
	parts := strings.Split(field, ",")
	var out []string
	for _, p := range parts {
		rng, step, hasStep := strings.Cut(p, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		switch {
		case rng == "7" && !hasStep:
			out = append(out, "0")
		case rng == "7":
			// "7/n" is 7 to the end of the week: Sunday alone.
			out = append(out, "0")
		case isRange && hi == "7":
			n := 1
			if hasStep {
				var err error
				if n, err = strconv.Atoi(step); err != nil || n < 1 {
					return "", fmt.Errorf("bad step in %q", p)
				}
			}
			if lo == "7" {
				out = append(out, "0")
				continue
			}
			start, err := strconv.Atoi(lo)
			if err != nil && hasStep {
				return "", fmt.Errorf("%q: write the range in numbers to give it a step", p)
			}
			r := lo + "-6" // a name (mon-7) is robfig's to read
			if hasStep {
				r += "/" + step
			}
			out = append(out, r)
			if err != nil || (7-start)%n == 0 {
				out = append(out, "0")
			}
		default:
			out = append(out, p)
		}
	}
	return strings.Join(out, ","), nil
}

// SplitCommand splits a trigger_command like a POSIX shell line (quotes,
// backslashes), with no expansion: the words run as they are, without a
// shell.
func SplitCommand(line string) ([]string, error) {
	argv, err := shlex.Split(line)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("no command")
	}
	return argv, nil
}
