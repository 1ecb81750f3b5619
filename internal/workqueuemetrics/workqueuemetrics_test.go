package workqueuemetrics_test

import (
	"testing"

	"github.com/sublet-dev/sublet/internal/workqueuemetrics"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/workqueue" // sets a provider at init, as in the binary
)

// addsByQueue returns the workqueue_adds_total samples by queue name.
func addsByQueue(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "workqueue_adds_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestDisable(t *testing.T) {
	before := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[string]{Name: "before-disable"})
	defer before.ShutDown()
	before.Add("a")
	if got := addsByQueue(t)["before-disable"]; got != 1 {
		t.Fatalf("a queue created with component-base's provider counted %v adds, want 1", got)
	}

	if err := workqueuemetrics.Disable(); err != nil {
		t.Fatal(err)
	}
	after := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[string]{Name: "after-disable"})
	defer after.ShutDown()
	after.Add("a")
	adds := addsByQueue(t)
	if _, ok := adds["after-disable"]; ok {
		t.Fatalf("a queue created after Disable has metrics: %v", adds)
	}
	before.Add("b")
	if got := addsByQueue(t)["before-disable"]; got != 2 {
		t.Fatalf("a queue created before Disable counted %v adds, want 2 (it keeps its metrics)", got)
	}
}
