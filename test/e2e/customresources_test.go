package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// The test's small cert-manager: group pki.example.com, a namespaced
// Certificate (spec.secretName: the Secret its controller writes;
// spec.keystores[].passwordSecretRef.name: a Secret it reads) and a
// cluster-scoped ClusterIssuer; Widgets are cluster-scoped too.
const pkiGroup = "pki.example.com"

var (
	certificates  = schema.GroupVersionResource{Group: pkiGroup, Version: "v1", Resource: "certificates"}
	clusterIssuer = schema.GroupVersionResource{Group: pkiGroup, Version: "v1", Resource: "clusterissuers"}
)

// installPKI gives the shared host the test's CRDs until the test ends.
func installPKI(t *testing.T) {
	t.Helper()
	docs := []string{testenv.OpenCRD(pkiGroup, "certificates", "Certificate", "Namespaced"),
		testenv.OpenCRD(pkiGroup, "clusterissuers", "ClusterIssuer", "Cluster"), testenv.OpenCRD(pkiGroup, "widgets", "Widget", "Cluster")}
	kubectl(t, host.Kubeconfig, strings.Join(docs, "---\n"), "apply", "-f", "-")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "crd", "certificates."+pkiGroup, "clusterissuers."+pkiGroup,
			"widgets."+pkiGroup, "--ignore-not-found").Run()
	})
	kubectl(t, host.Kubeconfig, "", "wait", "--for=condition=Established", "crd/certificates."+pkiGroup, "crd/clusterissuers."+pkiGroup, "--timeout=60s")
}

// runPKIController plays the host's controller in namespace ns until the
// test ends: for each Certificate it writes the Secret spec.secretName
// names and sets the Certificate Ready.
func runPKIController(t *testing.T, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	certs := dynamic.NewForConfigOrDie(host.Config).Resource(certificates).Namespace(ns)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := certs.List(ctx, metav1.ListOptions{})
			for i := 0; err == nil && i < len(list.Items); i++ {
				c := &list.Items[i]
				name, _, _ := unstructured.NestedString(c.Object, "spec", "secretName")
				if ready, _, _ := unstructured.NestedString(c.Object, "status", "state"); ready == "Ready" || name == "" {
					continue
				}
				_, err := host.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
					Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("cert of " + c.GetName()), "tls.key": []byte("key")}},
					metav1.CreateOptions{})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					continue
				}
				c.Object["status"] = map[string]interface{}{"state": "Ready"}
				_, _ = certs.UpdateStatus(ctx, c, metav1.UpdateOptions{})
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// customValues are the template's rows: Certificates to the host, with
// the Secret their controller returns and the password Secret it reads;
// Widgets to the host (cluster-scoped: refused); ClusterIssuers from it.
const customValues = `sync:
  toHost:
    customResources:
      certificates.pki.example.com:
        enabled: true
        references:
        - {path: spec.secretName, kind: Secret, returned: true}
        - {path: "spec.keystores[].passwordSecretRef.name", kind: Secret, optional: true}
        fields:
        - {path: spec.issuerRef.kind, values: [ClusterIssuer]}
      widgets.pki.example.com: {enabled: true}
  fromHost:
    customResources:
      clusterissuers.pki.example.com: {enabled: true}
`

// TestAgentCustomResources: custom resource rows of a template's values.
// A tenant's Certificate reaches the host namespace with its references
// named as host copies; the Secret it reads is copied to the host while it
// is used; the Secret the host's controller writes comes back, and so does
// the status. A Certificate whose required reference does not resolve, and
// a to-host row of a cluster-scoped kind, are refused with events and
// nothing on the host. The host's ClusterIssuers are visible and
// read-only. A VirtualCluster's own values may not add a row. Deleting the
// cluster deletes its host Certificates.
func TestAgentCustomResources(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	installPKI(t)
	_, stateDir, ns := agentWithNamespace(t, "vc-custom")
	logsOnFailure(t, stateDir)
	runPKIController(t, ns)
	hk := host.Kubeconfig
	kubectl(t, hk, "apiVersion: pki.example.com/v1\nkind: ClusterIssuer\nmetadata: {name: "+ns+"-ca}\nspec: {ca: {secretName: ca}}\n", "apply", "-f", "-")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "clusterissuer", ns+"-ca", "--ignore-not-found").Run()
	})
	tmpl := ns + "-pki"
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "virtualclustertemplate", tmpl, "--ignore-not-found").Run()
	})
	indent := func(v string) string {
		return "        " + strings.ReplaceAll(strings.TrimSuffix(v, "\n"), "\n", "\n        ")
	}
	indented := indent(customValues)
	kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualClusterTemplate
metadata: {name: %s}
spec:
  template:
    helmRelease:
      values: |
%s
---
apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: pki, namespace: %s}
spec:
  templateRef: {name: %s}
---
apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: own, namespace: %s}
spec:
  helmRelease:
    values: |
%s
`, tmpl, indented, ns, tmpl, ns, indented), "apply", "-f", "-")

	// Rows in a VirtualCluster's own values loosen what the admin set.
	poll(t, 60*time.Second, "the VirtualCluster with its own rows refused", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "virtualcluster", "own", "-n", ns, "-o", "jsonpath={.status.conditions}").Output()
		return err == nil && strings.Contains(string(out), "LoosensIsolation") &&
			strings.Contains(string(out), "sync.toHost.customResources.certificates.pki.example.com.enabled"), nil
	})

	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/pki", "-n", ns, "--timeout=120s")
	vkc := publishedKubeconfig(t, ns, "pki")
	vc := clientOf(t, vkc)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("virtual events:\n%s", kubectl(t, vkc, "", "get", "events", "-A"))
		}
	})
	virtualCerts := dynamic.NewForConfigOrDie(restConfigOf(t, vkc)).Resource(certificates).Namespace("default")
	poll(t, 60*time.Second, "Certificates served in the virtual cluster", func(ctx context.Context) (bool, error) {
		_, err := virtualCerts.List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})

	// A change of the host's CRD is followed (here a printer column).
	kubectl(t, hk, "", "patch", "crd", "certificates."+pkiGroup, "--type=json", "-p",
		`[{"op":"add","path":"/spec/versions/0/additionalPrinterColumns","value":[{"name":"Secret","type":"string","jsonPath":".spec.secretName"}]}]`)
	poll(t, 60*time.Second, "the host CRD's change in the virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vkc, "get", "crd", "certificates."+pkiGroup, "-o",
			"jsonpath={.spec.versions[0].additionalPrinterColumns[0].jsonPath}").Output()
		return err == nil && string(out) == ".spec.secretName", nil
	})

	// The host's ClusterIssuer is there, read-only.
	poll(t, 60*time.Second, "the host's ClusterIssuer in the virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vkc, "get", "clusterissuer", ns+"-ca", "-o", "jsonpath={.spec.ca.secretName}").Output()
		return err == nil && string(out) == "ca", nil
	})
	if out := kubectlFails(t, vkc, "delete", "clusterissuer", ns+"-ca"); !strings.Contains(out, "read-only in this virtual cluster") ||
		!strings.Contains(out, "sync.fromHost.customResources.clusterissuers.pki.example.com.enabled: false") {
		t.Errorf("deleting the host's ClusterIssuer: %s, want the read-only refusal", out)
	}
	// A to-host row of a cluster-scoped kind: refused, said once in the
	// virtual cluster, and in a condition of the VirtualCluster.
	waitEvent(t, vc, "default", "Namespace", "default", "CustomResourceRefused", "widgets.pki.example.com is Cluster-scoped")
	poll(t, 60*time.Second, "condition HostKindsServed=False naming the row", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "virtualcluster", "pki", "-n", ns, "-o",
			`jsonpath={.status.conditions[?(@.type=="HostKindsServed")]}`).Output()
		return err == nil && strings.Contains(string(out), `"status":"False"`) &&
			strings.Contains(string(out), "sync.toHost.customResources.widgets.pki.example.com: the host's widgets.pki.example.com is Cluster-scoped") &&
			!strings.Contains(string(out), "certificates"), nil
	})

	kubectl(t, vkc, `apiVersion: v1
kind: Secret
metadata: {name: pw, namespace: default}
stringData: {password: hunter2}
---
apiVersion: pki.example.com/v1
kind: Certificate
metadata: {name: web, namespace: default}
spec:
  secretName: web-tls
  dnsNames: [web.example.com]
  issuerRef: {kind: ClusterIssuer, name: `+ns+`-ca}
  keystores: [{passwordSecretRef: {name: pw}}]
---
apiVersion: pki.example.com/v1
kind: Certificate
metadata: {name: broken, namespace: default}
spec: {dnsNames: [broken.example.com], issuerRef: {kind: ClusterIssuer, name: x}}
---
apiVersion: pki.example.com/v1
kind: Certificate
metadata: {name: other-issuer, namespace: default}
spec: {secretName: o, issuerRef: {name: ca-x-default-x-other}}
`, "apply", "-f", "-")

	hostCerts := dynamic.NewForConfigOrDie(host.Config).Resource(certificates).Namespace(ns)
	h := waitObject(t, hostCerts, "web-x-default-x-pki", "the host copy of the Certificate")
	secretName, _, _ := unstructured.NestedString(h.Object, "spec", "secretName")
	stores, _, _ := unstructured.NestedSlice(h.Object, "spec", "keystores")
	if secretName != "web-tls-x-default-x-pki" || len(stores) != 1 ||
		fmt.Sprint(stores[0]) != "map[passwordSecretRef:map[name:pw-x-default-x-pki]]" || h.GetLabels()[translate.LabelCopyOf] != "pki" {
		t.Errorf("host Certificate: secretName %q keystores %v labels %v; want the references named as host copies", secretName, stores, h.GetLabels())
	}
	// The Secret it reads is on the host while it is used.
	poll(t, 60*time.Second, "the password Secret's host copy", func(ctx context.Context) (bool, error) {
		s, err := host.Client.CoreV1().Secrets(ns).Get(ctx, "pw-x-default-x-pki", metav1.GetOptions{})
		return err == nil && string(s.Data["password"]) == "hunter2", nil
	})
	// The controller's Secret and the status come back.
	poll(t, 60*time.Second, "the returned Secret in the virtual cluster", func(ctx context.Context) (bool, error) {
		s, err := vc.CoreV1().Secrets("default").Get(ctx, "web-tls", metav1.GetOptions{})
		return err == nil && string(s.Data["tls.crt"]) == "cert of web-x-default-x-pki" && s.Type == corev1.SecretTypeTLS &&
			s.Labels[translate.LabelFromHost] == "true", nil
	})
	poll(t, 60*time.Second, "the Certificate's status in the virtual cluster", func(ctx context.Context) (bool, error) {
		v, err := virtualCerts.Get(ctx, "web", metav1.GetOptions{})
		state, _, _ := unstructured.NestedString(v.Object, "status", "state")
		return err == nil && state == "Ready", nil
	})
	// The returned Secret is not copied to the host again; the controller's
	// is marked as returned to this cluster.
	if s, err := host.Client.CoreV1().Secrets(ns).Get(ctx, "web-tls-x-default-x-pki", metav1.GetOptions{}); err != nil {
		t.Errorf("the controller's Secret: %v", err)
	} else if s.Labels[translate.LabelCopyOf] != "" || s.Labels[translate.LabelReturnedTo] != "pki" {
		t.Errorf("the controller's Secret: labels %v, want only %s=pki of ours", s.Labels, translate.LabelReturnedTo)
	}

	// A host Secret older than the object's host copy could be anyone's
	// (it is named by a name the tenant chose): not returned.
	old, err := host.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "old-tls-x-default-x-pki"},
		Data: map[string][]byte{"tls.key": []byte("someone else's")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Creation times are in seconds: the Certificate's host copy comes in
	// a later one (the same second counts as after).
	poll(t, 5*time.Second, "the next second", func(context.Context) (bool, error) {
		return time.Now().Unix() > old.CreationTimestamp.Unix(), nil
	})
	kubectl(t, vkc, "apiVersion: pki.example.com/v1\nkind: Certificate\nmetadata: {name: old, namespace: default}\nspec: {secretName: old-tls, issuerRef: {kind: ClusterIssuer, name: x}}\n", "apply", "-f", "-")
	waitEvent(t, vc, "default", "Certificate", "old", "ReturnRefused", "predates this object's host copy")
	if _, err := vc.CoreV1().Secrets("default").Get(ctx, "old-tls", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a host Secret older than the Certificate was returned (%v)", err)
	}
	// A tenant's label does not make its Secret a returned one: it is
	// copied to the host for the pod that uses it like any other.
	kubectl(t, vkc, `apiVersion: v1
kind: Secret
metadata: {name: forged, namespace: default, labels: {sublet.dev/from-host: "true"}}
stringData: {a: b}
---
apiVersion: v1
kind: Pod
metadata: {name: uses-forged, namespace: default}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: s, secret: {secretName: forged}}]
`, "apply", "-f", "-")
	poll(t, 60*time.Second, "the host copy of a Secret with a forged label", func(ctx context.Context) (bool, error) {
		s, err := host.Client.CoreV1().Secrets(ns).Get(ctx, "forged-x-default-x-pki", metav1.GetOptions{})
		return err == nil && s.Labels[translate.LabelCopyOf] == "pki", nil
	})

	// A pod may mount the returned Secret: its host pod uses the host's.
	kubectl(t, vkc, `apiVersion: v1
kind: Pod
metadata: {name: uses-tls, namespace: default}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: tls, secret: {secretName: web-tls}}]
`, "apply", "-f", "-")
	poll(t, 60*time.Second, "the host pod of a pod that mounts the returned Secret", func(ctx context.Context) (bool, error) {
		p, err := host.Client.CoreV1().Pods(ns).Get(ctx, "uses-tls-x-default-x-pki", metav1.GetOptions{})
		for i := 0; err == nil && i < len(p.Spec.Volumes); i++ {
			if s := p.Spec.Volumes[i].Secret; s != nil && s.SecretName == "web-tls-x-default-x-pki" {
				return true, nil
			}
		}
		return false, nil
	})
	kubectl(t, vkc, "", "delete", "pod", "uses-tls", "-n", "default", "--grace-period=0", "--force")

	// A required reference that does not resolve: an event, no host copy.
	waitEvent(t, vc, "default", "Certificate", "broken", "RestrictedByIsolation", "spec.secretName does not resolve")
	// A field outside its rule: the same.
	waitEvent(t, vc, "default", "Certificate", "other-issuer", "RestrictedByIsolation",
		`spec.issuerRef.kind is "", and sync.toHost.customResources.certificates.pki.example.com.fields[0] allows only "ClusterIssuer"`)
	for _, name := range []string{"broken", "other-issuer"} {
		if _, err := hostCerts.Get(ctx, name+"-x-default-x-pki", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the refused Certificate %s has a host copy (%v)", name, err)
		}
	}

	// Without its user, the password Secret's host copy goes; with the
	// Certificate, its returned Secret.
	kubectl(t, vkc, "", "delete", "certificate", "web", "-n", "default")
	poll(t, 60*time.Second, "the host copies gone with the Certificate", func(ctx context.Context) (bool, error) {
		_, errCert := hostCerts.Get(ctx, "web-x-default-x-pki", metav1.GetOptions{})
		_, errPW := host.Client.CoreV1().Secrets(ns).Get(ctx, "pw-x-default-x-pki", metav1.GetOptions{})
		_, errTLS := vc.CoreV1().Secrets("default").Get(ctx, "web-tls", metav1.GetOptions{})
		return apierrors.IsNotFound(errCert) && apierrors.IsNotFound(errPW) && apierrors.IsNotFound(errTLS), nil
	})

	// Turning the row off in the template deletes its host copies (the
	// syncer lost the right to write them first); deleting the virtual
	// cluster deletes the host Secrets returned to it.
	kubectl(t, vkc, "apiVersion: pki.example.com/v1\nkind: Certificate\nmetadata: {name: kept, namespace: default}\nspec: {secretName: kept-tls, issuerRef: {kind: ClusterIssuer, name: x}}\n", "apply", "-f", "-")
	poll(t, 60*time.Second, "the second Certificate's Secret returned", func(ctx context.Context) (bool, error) {
		_, err := vc.CoreV1().Secrets("default").Get(ctx, "kept-tls", metav1.GetOptions{})
		return err == nil, nil
	})
	off := indent(strings.Replace(customValues, "certificates.pki.example.com:\n        enabled: true", "certificates.pki.example.com:\n        enabled: false", 1))
	if off == indented {
		t.Fatal("the test's values changed shape")
	}
	kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualClusterTemplate\nmetadata: {name: %s}\nspec:\n  template:\n    helmRelease:\n      values: |\n%s\n", tmpl, off), "apply", "-f", "-")
	poll(t, 90*time.Second, "the host copy of a Certificate gone with its row", func(ctx context.Context) (bool, error) {
		_, err := hostCerts.Get(ctx, "kept-x-default-x-pki", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	kubectl(t, hk, "", "delete", "virtualcluster", "pki", "-n", ns, "--timeout=60s")
	if l, err := hostCerts.List(ctx, metav1.ListOptions{LabelSelector: translate.LabelCopyOf + "=pki"}); err != nil || len(l.Items) != 0 {
		t.Errorf("host Certificates left after the virtual cluster was deleted: %d (%v)", len(l.Items), err)
	}
	if l, err := host.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: translate.LabelReturnedTo + "=pki"}); err != nil || len(l.Items) != 0 {
		t.Errorf("host Secrets returned to the virtual cluster left after it was deleted: %d (%v)", len(l.Items), err)
	}
}
