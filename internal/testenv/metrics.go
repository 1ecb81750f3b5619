package testenv

import (
	"bytes"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a metric: its labels and its value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Metric returns the series of metric family name in Prometheus text
// exposition (an API server's /metrics), none if it is absent.
func Metric(text []byte, name string) ([]Sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	f := families[name]
	var out []Sample
	for _, m := range f.GetMetric() {
		s := Sample{Labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.Labels[l.GetName()] = l.GetValue()
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			s.Value = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			s.Value = m.GetGauge().GetValue()
		default:
			s.Value = m.GetUntyped().GetValue()
		}
		out = append(out, s)
	}
	return out, nil
}
