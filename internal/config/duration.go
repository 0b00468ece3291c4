package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written as a string such as "30s", "1m" or
// "200ms" in YAML, JSON and environment variables.
type Duration time.Duration

// Seconds returns a Duration of n seconds.
func Seconds(n int64) Duration { return Duration(time.Duration(n) * time.Second) }

// Millis returns a Duration of n milliseconds.
func Millis(n int64) Duration { return Duration(time.Duration(n) * time.Millisecond) }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String writes d in its shortest exact form: "24h", "1m", "30s", "200ms",
// or time.Duration's form ("1m30s") when no single unit fits.
func (d Duration) String() string {
	td := time.Duration(d)
	if td == 0 {
		return "0s"
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if td%u.unit == 0 {
			return fmt.Sprintf("%d%s", td/u.unit, u.name)
		}
	}
	return td.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what
// time.ParseDuration accepts, except negative durations.
func (d *Duration) UnmarshalText(b []byte) error {
	td, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, e.g. \"30s\", \"5m\", \"200ms\"", b)
	}
	if td < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", b)
	}
	*d = Duration(td)
	return nil
}
