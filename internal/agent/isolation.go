package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	psapi "k8s.io/pod-security-admission/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/values"
)

// isolationName names the guard rails the agent keeps for one virtual
// cluster in its host namespace.
func isolationName(vc *storagev1.VirtualCluster) string { return "sublet-" + vc.Name }

// reconcileIsolation creates, updates or removes the ResourceQuota, the
// LimitRange and the NetworkPolicy that iso asks for in vc's namespace.
// Each is owned by vc; a tenant or admin who edits one gets it back on
// the next reconcile.
func reconcileIsolation(ctx context.Context, c client.Client, vc *storagev1.VirtualCluster, iso values.Isolation, apiEndpoint string) error {
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: isolationName(vc), Namespace: vc.Namespace}
	}
	quota := &corev1.ResourceQuota{ObjectMeta: meta()}
	limits := &corev1.LimitRange{ObjectMeta: meta()}
	policy := &networkingv1.NetworkPolicy{ObjectMeta: meta()}
	for _, o := range []struct {
		kind   string
		obj    client.Object
		on     bool
		mutate func() error
	}{
		{"ResourceQuota", quota, iso.Enabled || iso.ResourceQuota.Enabled, func() error {
			hard, err := resourceList(values.DefaultQuota, iso.ResourceQuota.Quota)
			quota.Spec.Hard = hard
			return err
		}},
		{"LimitRange", limits, iso.Enabled || iso.LimitRange.Enabled, func() error {
			def, err := resourceList(values.DefaultLimit, iso.LimitRange.Default)
			if err != nil {
				return err
			}
			req, err := resourceList(values.DefaultLimitRequest, iso.LimitRange.DefaultRequest)
			limits.Spec.Limits = []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer, Default: def, DefaultRequest: req}}
			return err
		}},
		{"NetworkPolicy", policy, iso.Enabled || iso.NetworkPolicy.Enabled, func() error {
			policy.Spec = networkPolicySpec(vc.Name, iso.NetworkPolicy, apiEndpoint)
			return nil
		}},
	} {
		if !o.on {
			// Read first (from the cache): most clusters never had one.
			if err := c.Get(ctx, client.ObjectKeyFromObject(o.obj), o.obj); err != nil {
				if client.IgnoreNotFound(err) != nil {
					return fmt.Errorf("isolation: %s %s: %w", o.kind, o.obj.GetName(), err)
				}
				continue
			}
			if err := c.Delete(ctx, o.obj); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("isolation: remove %s %s: %w", o.kind, o.obj.GetName(), err)
			}
			continue
		}
		_, err := controllerutil.CreateOrUpdate(ctx, c, o.obj, func() error {
			o.obj.SetLabels(map[string]string{storagev1.LabelManagedBy: storagev1.AgentName, storagev1.LabelVirtualCluster: vc.Name})
			if err := o.mutate(); err != nil {
				return err
			}
			return controllerutil.SetControllerReference(vc, o.obj, c.Scheme())
		})
		if err != nil {
			return fmt.Errorf("isolation: %s %s: %w", o.kind, o.obj.GetName(), err)
		}
	}
	return nil
}

// resourceList is defaults overlaid with the values' own quantities.
func resourceList(defaults map[string]string, own map[string]values.Quantity) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	for k, v := range defaults {
		out[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	for k, v := range own {
		q, err := resource.ParseQuantity(string(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[corev1.ResourceName(k)] = q
	}
	return out, nil
}

// privateRanges are what "the outside world" excludes.
var privateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"}

// networkPolicySpec lets the virtual cluster's host pods reach each other,
// the host's DNS, the virtual API server and the outside world, and be
// reached by each other and by the host's ingress controller; nothing else
// (no other namespace, no other virtual cluster in the same namespace).
func networkPolicySpec(name string, np values.IsolationNetworkPolicy, apiEndpoint string) networkingv1.NetworkPolicySpec {
	own := metav1.LabelSelector{MatchLabels: map[string]string{translate.LabelCopyOf: name}}
	nsNamed := func(names ...string) *metav1.LabelSelector {
		sort.Strings(names)
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: names}}}
	}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	ingressFrom := np.AllowIngressFromNamespaces
	if ingressFrom == nil {
		ingressFrom = values.DefaultIngressNamespaces
	}
	spec := networkingv1.NetworkPolicySpec{
		PodSelector: own,
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &own}}}},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &own}}},
			{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsNamed("kube-system"), PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: privateRanges}}}},
		},
	}
	if len(ingressFrom) > 0 {
		spec.Ingress = append(spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsNamed(ingressFrom...)}}})
	}
	// The virtual API server, wherever it runs: the pod runtime's pod in
	// this namespace, or the process runtime's address.
	spec.Egress = append(spec.Egress, networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{"app.kubernetes.io/name": "vcluster", "app.kubernetes.io/instance": name}}}}})
	if u, err := url.Parse(apiEndpoint); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			bits := 32
			if ip.To4() == nil {
				bits = 128
			}
			spec.Egress = append(spec.Egress, networkingv1.NetworkPolicyEgressRule{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("%s/%d", ip, bits)}}}})
		}
	}
	return spec
}

// labelOwnedNamespace gives a host namespace Sublet created for vc (label
// LabelNamespaceFor=vc's name) the pod security labels of vc's level, so
// the host's own admission backs up the syncer's check. Namespaces Sublet
// did not create are left as their owners set them.
func labelOwnedNamespace(ctx context.Context, c client.Client, vc *storagev1.VirtualCluster, level string) error {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: vc.Namespace}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ns.Labels[storagev1.LabelNamespaceFor] != vc.Name {
		return nil
	}
	if ns.Labels[psapi.EnforceLevelLabel] == level && ns.Labels[psapi.EnforceVersionLabel] == "latest" {
		return nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	ns.Labels[psapi.EnforceLevelLabel] = level
	ns.Labels[psapi.EnforceVersionLabel] = "latest"
	if err := c.Patch(ctx, ns, patch); err != nil {
		return fmt.Errorf("label namespace %s with pod security level %s: %w", ns.Name, level, err)
	}
	return nil
}
