package syncer

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVirtualEvent(t *testing.T) {
	now := metav1.NewMicroTime(time.Now())
	h := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web-x-team-x-demo.abc", Namespace: "host-ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "host-ns", Name: "web-x-team-x-demo", UID: "host-uid"},
		Reason:         "Scheduled", Message: "assigned to node-1", Type: corev1.EventTypeNormal,
		EventTime: now, ReportingController: "default-scheduler", ReportingInstance: "s-1", Action: "Binding",
	}
	v := virtualEvent(h, "team", "web", "virtual-uid")
	if v.Namespace != "team" || v.InvolvedObject.Namespace != "team" || v.InvolvedObject.Name != "web" || v.InvolvedObject.UID != "virtual-uid" {
		t.Errorf("event not about the virtual object: %+v", v.InvolvedObject)
	}
	if v.Reason != "Scheduled" || v.ReportingController != "default-scheduler" || v.FirstTimestamp.IsZero() || v.LastTimestamp.IsZero() {
		t.Errorf("event fields not carried: %+v", v)
	}
	if again := virtualEvent(h, "team", "web", "virtual-uid"); again.Name != v.Name {
		t.Error("virtual event name not stable: a restart would duplicate events")
	}
	other := h.DeepCopy()
	other.Name = "web-x-team-x-demo.def"
	if virtualEvent(other, "team", "web", "virtual-uid").Name == v.Name {
		t.Error("two host events map to one virtual event")
	}
}
