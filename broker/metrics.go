package broker

import "time"

// Metrics receives what the broker measures. Package cmd wires a Prometheus
// implementation; labels are connection names and result codes, never secrets.
type Metrics interface {
	// Refresh is called after each call to the token endpoint.
	Refresh(connection, result string, took time.Duration)
	// Invalidate is called for each Invalidate received.
	Invalidate(connection string)
	// Leading is called when this replica starts or stops leading.
	Leading(bool)
}

type nopMetrics struct{}

func (nopMetrics) Refresh(string, string, time.Duration) {}
func (nopMetrics) Invalidate(string)                     {}
func (nopMetrics) Leading(bool)                          {}
