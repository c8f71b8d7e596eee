package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("30s",
// "1h30m") or a number of seconds (30, 0.5). It marshals as the string.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		p, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as \"30s\" or \"5m\"", v)
		}
		*d = Duration(p)
		return nil
	case json.Number:
		p, err := secondsDuration(string(v))
		if err != nil {
			return err
		}
		*d = Duration(p)
		return nil
	default:
		return errors.New("must be a duration such as \"30s\" or a number of seconds")
	}
}

// secondsDuration converts a number of seconds.
func secondsDuration(s string) (time.Duration, error) {
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > maxSeconds || n < -maxSeconds {
			return 0, fmt.Errorf("%s seconds is out of range", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > float64(maxSeconds) {
		return 0, fmt.Errorf("%s seconds is out of range", s)
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}
