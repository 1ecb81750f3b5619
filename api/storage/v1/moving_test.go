package v1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMovingTo(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	vc := func(ann map[string]string) *VirtualCluster {
		return &VirtualCluster{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
	}
	for _, c := range []struct {
		name   string
		ann    map[string]string
		moving bool
	}{
		{"held", map[string]string{AnnotationMovingTo: "eu-2", AnnotationMovingUntil: "2026-12-06T12:00:10Z"}, true},
		{"lease over", map[string]string{AnnotationMovingTo: "eu-2", AnnotationMovingUntil: "2026-12-06T12:00:00Z"}, false},
		{"no lease", map[string]string{AnnotationMovingTo: "eu-2"}, false},
		{"bad lease", map[string]string{AnnotationMovingTo: "eu-2", AnnotationMovingUntil: "soon"}, false},
		{"no target", map[string]string{AnnotationMovingUntil: "2026-12-06T12:00:10Z"}, false},
		{"nothing", nil, false},
	} {
		to, ok := MovingTo(vc(c.ann), now)
		if ok != c.moving || (ok && to != "eu-2") {
			t.Errorf("%s: %q %v", c.name, to, ok)
		}
	}
}
