package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenbroker/tokenbroker/broker"
)

// metrics implements broker.Metrics with Prometheus, and collects the
// per-connection gauges from the broker's state at scrape time so they are
// never stale. Labels are connection names, states and result codes only.
type metrics struct {
	b             *broker.Broker
	refreshes     *prometheus.CounterVec
	refreshTime   *prometheus.HistogramVec
	invalidations *prometheus.CounterVec
	leading       prometheus.Gauge

	expiry, generation, rtLeft, state *prometheus.Desc
}

func newMetrics(b *broker.Broker) *metrics {
	return &metrics{
		b: b,
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refreshes_total", Help: "Calls to the token endpoint, by connection and result (ok or the OAuth error code).",
		}, []string{"connection", "result"}),
		refreshTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokenbroker_refresh_duration_seconds", Help: "Latency of calls to the token endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"connection"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_invalidations_total", Help: "Invalidate calls received by this replica.",
		}, []string{"connection"}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenbroker_leader", Help: "1 while this replica leads and refreshes.",
		}),
		expiry:     prometheus.NewDesc("tokenbroker_token_expiry_seconds", "Seconds until the current access token expires (negative: expired).", []string{"connection"}, nil),
		generation: prometheus.NewDesc("tokenbroker_token_generation", "Generation of the current access token.", []string{"connection"}, nil),
		rtLeft:     prometheus.NewDesc("tokenbroker_refresh_token_expiry_seconds", "Seconds until the refresh token chain dies (Adobe: 14 days after login).", []string{"connection"}, nil),
		state:      prometheus.NewDesc("tokenbroker_connection_state", "1 for the connection's current state.", []string{"connection", "state"}, nil),
	}
}

var _ broker.Metrics = (*metrics)(nil)

func (m *metrics) Refresh(conn, result string, took time.Duration) {
	m.refreshes.WithLabelValues(conn, result).Inc()
	m.refreshTime.WithLabelValues(conn).Observe(took.Seconds())
}
func (m *metrics) Invalidate(conn string) { m.invalidations.WithLabelValues(conn).Inc() }
func (m *metrics) Leading(on bool) {
	if on {
		m.leading.Set(1)
	} else {
		m.leading.Set(0)
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.refreshes.Describe(ch)
	m.refreshTime.Describe(ch)
	m.invalidations.Describe(ch)
	m.leading.Describe(ch)
	ch <- m.expiry
	ch <- m.generation
	ch <- m.rtLeft
	ch <- m.state
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.refreshes.Collect(ch)
	m.refreshTime.Collect(ch)
	m.invalidations.Collect(ch)
	m.leading.Collect(ch)
	sts, err := m.b.Statuses()
	if err != nil {
		return
	}
	now := time.Now()
	for _, st := range sts {
		if !st.ExpiresAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.expiry, prometheus.GaugeValue, st.ExpiresAt.Sub(now).Seconds(), st.Name)
		}
		ch <- prometheus.MustNewConstMetric(m.generation, prometheus.GaugeValue, float64(st.Generation), st.Name)
		if !st.RefreshTokenExpiresAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.rtLeft, prometheus.GaugeValue, st.RefreshTokenExpiresAt.Sub(now).Seconds(), st.Name)
		}
		for _, s := range []broker.State{broker.StateOK, broker.StateNeedsSeed, broker.StateNeedsReauth, broker.StateDegraded} {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, st.Name, string(s))
		}
	}
}
