// Package workqueuemetrics turns client-go's work-queue metrics off for a
// process.
//
// Every named work queue with metrics runs a ticker that updates its
// unfinished-work gauges every 500 ms. A virtual cluster's API server and
// controller-manager have 77 of them: measured on an idle virtual cluster,
// they were half of its CPU. client-go's interval is a constant, and its
// metrics provider can be set once only, which component-base and
// controller-runtime both do at init; the only provider without the ticker
// is client-go's unexported no-op one. This package keeps that value, read
// at init before either of them replaces it (packages are initialized in
// import-path order once their imports are, and this path sorts before
// k8s.io/ and sigs.k8s.io/), and puts it back on Disable.
package workqueuemetrics

import (
	"fmt"
	_ "unsafe" // for go:linkname

	"k8s.io/client-go/util/workqueue"
)

// provider is client-go's process-wide provider; queues read it when they
// are created.
//
//go:linkname provider k8s.io/client-go/util/workqueue.globalMetricsProvider
var provider workqueue.MetricsProvider

// noop is client-go's initial provider, the no-op one.
var noop = provider

const noopType = "workqueue.noopMetricsProvider"

// Disable makes the work queues created from now on in this process
// metric-free, with no ticker; queues created before keep their metrics.
func Disable() error {
	if t := fmt.Sprintf("%T", noop); t != noopType {
		return fmt.Errorf("client-go's initial work-queue metrics provider is %s, not %s: this client-go version is not supported", t, noopType)
	}
	provider = noop
	return nil
}
