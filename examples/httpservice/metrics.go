package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/strata-cache/strata/otelcache"
)

// metrics is Strata's OpenTelemetry metrics, served in the Prometheus text
// format at /metrics.
type metrics struct {
	observer *otelcache.Observer
	handler  http.Handler
}

func newMetrics() (*metrics, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	obs, err := otelcache.New(otelcache.WithMeterProvider(mp))
	if err != nil {
		return nil, err
	}
	return &metrics{observer: obs, handler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{})}, nil
}
