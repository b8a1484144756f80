package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// day is what "d" stands for in a duration flag: 24 hours (the API stores hours; a day is never a
// calendar day here).
const day = 24 * time.Hour

// durationFlag is a time.Duration flag that also takes days, as people write lifetimes: "30d",
// "1d12h", or anything time.ParseDuration takes ("720h", "90m").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "0s"
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// parseDuration parses a Go duration with an optional leading whole number of days: "30d",
// "1d12h", "-2d", "720h".
func parseDuration(s string) (time.Duration, error) {
	invalid := fmt.Errorf("invalid duration %q: use d, h, m or s, e.g. 30d, 720h or 1d12h", s)
	body, negative := strings.CutPrefix(s, "-")
	var days time.Duration
	if i := strings.IndexByte(body, 'd'); i >= 0 {
		n, err := strconv.ParseInt(body[:i], 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(day) {
			return 0, invalid
		}
		days, body = time.Duration(n)*day, body[i+1:]
		if body == "" {
			body = "0s"
		}
	}
	rest, err := time.ParseDuration(body)
	if err != nil || rest < 0 || rest > math.MaxInt64-days {
		return 0, invalid
	}
	if negative {
		return -(days + rest), nil
	}
	return days + rest, nil
}
