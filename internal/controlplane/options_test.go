package controlplane

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestWorkqueueMetricsDefault(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		args []string
		want bool
	}{
		{ModeHost, nil, true},
		{ModeVirtual, nil, false},
		{ModeVirtual, []string{"--workqueue-metrics"}, true},
		{ModeVirtual, []string{"--workqueue-metrics=true"}, true},
		{ModeHost, []string{"--workqueue-metrics=false"}, false},
	} {
		o := NewOptions()
		o.Mode = tc.mode
		o.DataDir = t.TempDir()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := o.Complete(); err != nil {
			t.Fatal(err)
		}
		if got := o.WorkqueueMetrics.Value(); got != tc.want {
			t.Errorf("%s mode, %v: work-queue metrics %v, want %v", tc.mode, tc.args, got, tc.want)
		}
	}
}

func TestWorkqueueMetricsBadValue(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	NewOptions().AddFlags(fs)
	if err := fs.Parse([]string{"--workqueue-metrics=maybe"}); err == nil {
		t.Fatal("--workqueue-metrics=maybe was accepted")
	}
}
