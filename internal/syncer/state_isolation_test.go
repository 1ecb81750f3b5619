package syncer

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
)

// isolationStateCases: what the default isolation policy keeps off the
// host, with an event telling the tenant.
func isolationStateCases() []stateCase {
	return []stateCase{
		{
			name: "service-isolation",
			virtual: func(ctx context.Context, e stateEnv) error {
				_, err := e.virtual.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalIPs: []string{"10.96.0.1"},
						Ports: []corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": "web"}}}, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().Services(e.t.HostNamespace).Get(ctx, e.hostName("web"), metav1.GetOptions{})
				if msg := exists("host service", err, true); msg != "" {
					return msg
				}
				if h.Spec.Type != corev1.ServiceTypeClusterIP || len(h.Spec.ExternalIPs) > 0 {
					return fmt.Sprintf("host service type %s externalIPs %v, want ClusterIP and none", h.Spec.Type, h.Spec.ExternalIPs)
				}
				return restrictedEvent(ctx, e, "Service", "web", "externalIPs 10.96.0.1")
			},
		},
		{
			name: "endpoints-isolation",
			virtual: func(ctx context.Context, e stateEnv) error {
				if _, err := e.virtual.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: podSpec()}, metav1.CreateOptions{}); err != nil {
					return err
				}
				_, err := e.virtual.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
					Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}}, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				pod, err := e.virtual.CoreV1().Pods(e.ns).Get(ctx, "db", metav1.GetOptions{})
				if err != nil || pod.Status.PodIP == "" {
					return "waiting for the pod's IP"
				}
				// The tenant names its own pod and the host's API server.
				want := []corev1.EndpointAddress{{IP: pod.Status.PodIP}, {IP: "10.0.0.1"}}
				v, err := e.virtual.CoreV1().Endpoints(e.ns).Get(ctx, "db", metav1.GetOptions{})
				if err != nil {
					v = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: e.ns}}
				}
				if len(v.Subsets) != 1 || len(v.Subsets[0].Addresses) != 2 {
					v.Subsets = []corev1.EndpointSubset{{Addresses: want, Ports: []corev1.EndpointPort{{Port: 5432}}}}
					if v.ResourceVersion == "" {
						_, err = e.virtual.CoreV1().Endpoints(e.ns).Create(ctx, v, metav1.CreateOptions{})
					} else {
						_, err = e.virtual.CoreV1().Endpoints(e.ns).Update(ctx, v, metav1.UpdateOptions{})
					}
					if err != nil {
						return "write the virtual endpoints: " + err.Error()
					}
					return "virtual endpoints written"
				}
				h, err := e.host.CoreV1().Endpoints(e.t.HostNamespace).Get(ctx, e.hostName("db"), metav1.GetOptions{})
				if msg := exists("host endpoints", err, true); msg != "" {
					return msg
				}
				if len(h.Subsets) != 1 || len(h.Subsets[0].Addresses) != 1 || h.Subsets[0].Addresses[0].IP != pod.Status.PodIP {
					return fmt.Sprintf("host endpoints %+v, want only the pod's %s", h.Subsets, pod.Status.PodIP)
				}
				return restrictedEvent(ctx, e, "Endpoints", "db", "addresses 10.0.0.1")
			},
		},
		{
			name: "ingress-host-of-another-namespace",
			host: func(ctx context.Context, e stateEnv) error {
				other, err := e.host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "other-team-"}}, metav1.CreateOptions{})
				if err != nil {
					return err
				}
				ing := testIngress()
				ing.Spec.TLS = nil
				ing.Spec.Rules[0].Host = "claimed-" + e.t.HostNamespace + ".example.com"
				_, err = e.host.NetworkingV1().Ingresses(other.Name).Create(ctx, ing, metav1.CreateOptions{})
				return err
			},
			virtual: func(ctx context.Context, e stateEnv) error {
				ing := testIngress()
				ing.Spec.TLS = nil
				ing.Annotations["nginx.ingress.kubernetes.io/server-snippet"] = "location /steal { return 200; }"
				free := ing.Spec.Rules[0]
				free.Host = "free-" + rand.String(6) + ".example.com"
				ing.Spec.Rules[0].Host = "claimed-" + e.t.HostNamespace + ".example.com"
				ing.Spec.Rules = append(ing.Spec.Rules, free)
				ing.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
				ing.Spec.IngressClassName = ptr.To("nginx")
				_, err := e.virtual.NetworkingV1().Ingresses(e.ns).Create(ctx, ing, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.NetworkingV1().Ingresses(e.t.HostNamespace).Get(ctx, e.hostName("web"), metav1.GetOptions{})
				if msg := exists("host ingress", err, true); msg != "" {
					return msg
				}
				if len(h.Spec.Rules) != 1 || !strings.HasPrefix(h.Spec.Rules[0].Host, "free-") {
					return fmt.Sprintf("host ingress rules %+v, want only the free host", h.Spec.Rules)
				}
				if _, ok := h.Annotations["nginx.ingress.kubernetes.io/server-snippet"]; ok || h.Annotations["cert-manager.io/cluster-issuer"] != "le" {
					return fmt.Sprintf("host ingress annotations %v", h.Annotations)
				}
				if msg := restrictedEvent(ctx, e, "Ingress", "web", "served for another host namespace"); msg != "" {
					return msg
				}
				return restrictedEvent(ctx, e, "Ingress", "web", "nginx.ingress.kubernetes.io/server-snippet")
			},
		},
	}
}

// restrictedEvent returns "" once the virtual object has an event saying
// the isolation policy left out what names want.
func restrictedEvent(ctx context.Context, e stateEnv, kind, name, want string) string {
	events, err := e.virtual.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var seen []string
	for _, ev := range events.Items {
		if ev.InvolvedObject.Kind == kind && ev.InvolvedObject.Name == name && ev.Reason == ReasonRestricted {
			if strings.Contains(ev.Message, want) {
				return ""
			}
			seen = append(seen, ev.Message)
		}
	}
	return fmt.Sprintf("no %s event on %s %s naming %q (seen: %v)", ReasonRestricted, kind, name, want, seen)
}
