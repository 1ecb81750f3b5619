// Package policy embeds the admission policies Sublet installs on a host
// cluster beside its CRDs: today the ValidatingAdmissionPolicy that lets
// only those allowed the `use` verb on a template that loosens isolation
// create VirtualClusters with it. Its parameter is ConfigMap
// TemplateIsolation in the platform's namespace, which the agent keeps. The YAML files also work with a plain
// `kubectl apply -f config/policy`; the platform chart ships the same
// files (hack/verify-chart-crds.sh checks they match).
package policy

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Files holds the manifests.
//
//go:embed *.yaml
var Files embed.FS

// Objects decodes the embedded policies and bindings.
func Objects() ([]*admissionregistrationv1.ValidatingAdmissionPolicy, []*admissionregistrationv1.ValidatingAdmissionPolicyBinding, error) {
	files, err := fs.Glob(Files, "*.yaml")
	if err != nil {
		return nil, nil, err
	}
	var policies []*admissionregistrationv1.ValidatingAdmissionPolicy
	var bindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for _, f := range files {
		data, err := Files.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		r := utilyaml.NewYAMLReader(bufioReader(data))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("embedded policy %s: %w", f, err)
			}
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				return nil, nil, fmt.Errorf("embedded policy %s: %w", f, err)
			}
			switch meta.Kind {
			case "":
				continue
			case "ValidatingAdmissionPolicy":
				p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
				if err := yaml.UnmarshalStrict(doc, p); err != nil {
					return nil, nil, fmt.Errorf("embedded policy %s: %w", f, err)
				}
				policies = append(policies, p)
			case "ValidatingAdmissionPolicyBinding":
				b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
				if err := yaml.UnmarshalStrict(doc, b); err != nil {
					return nil, nil, fmt.Errorf("embedded policy %s: %w", f, err)
				}
				bindings = append(bindings, b)
			default:
				return nil, nil, fmt.Errorf("embedded policy %s: unexpected kind %s", f, meta.Kind)
			}
		}
	}
	return policies, bindings, nil
}

// The policy's parameter: ConfigMap TemplateIsolation in the platform's
// namespace (DefaultNamespace unless the agent is told another), one key
// per template, "true" if it loosens isolation, "false" if not.
const (
	TemplateIsolation = "sublet-template-isolation"
	DefaultNamespace  = "sublet-system"
)

// EnsureParameter creates namespace ns and the policy's parameter in it if
// they are missing; it never changes an existing one.
func EnsureParameter(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return fmt.Errorf("create namespace %s for the admission policy's parameter: %w", ns, err)
	}
	_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TemplateIsolation}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ConfigMap %s/%s, the admission policy's parameter: %w", ns, TemplateIsolation, err)
	}
	return nil
}

// Install creates or updates the embedded policies and their bindings, the
// bindings' parameter in namespace ns, and waits until the API server
// enforces them.
func Install(ctx context.Context, cfg *rest.Config, ns string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	policies, bindings, err := Objects()
	if err != nil {
		return err
	}
	if err := EnsureParameter(ctx, cs, ns); err != nil {
		return err
	}
	for _, b := range bindings {
		if b.Spec.ParamRef != nil {
			b.Spec.ParamRef.Namespace = ns
		}
	}
	api := cs.AdmissionregistrationV1()
	for _, p := range policies {
		have, err := api.ValidatingAdmissionPolicies().Get(ctx, p.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.ValidatingAdmissionPolicies().Create(ctx, p, metav1.CreateOptions{})
		case err == nil:
			p.ResourceVersion = have.ResourceVersion
			_, err = api.ValidatingAdmissionPolicies().Update(ctx, p, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("install ValidatingAdmissionPolicy %s (or run with --install-crds=false after kubectl apply -f config/policy): %w", p.Name, err)
		}
	}
	for _, b := range bindings {
		have, err := api.ValidatingAdmissionPolicyBindings().Get(ctx, b.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{})
		case err == nil:
			b.ResourceVersion = have.ResourceVersion
			_, err = api.ValidatingAdmissionPolicyBindings().Update(ctx, b, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("install ValidatingAdmissionPolicyBinding %s (or run with --install-crds=false after kubectl apply -f config/policy): %w", b.Name, err)
		}
	}
	return waitInForce(ctx, cs)
}

// waitInForce waits until the API server enforces the policies: it takes
// up new policies and bindings asynchronously, and a binding whose
// parameter it has not seen yet refuses every VirtualCluster (the policies
// fail closed). A server-side dry run of a VirtualCluster create tells.
func waitInForce(ctx context.Context, cs kubernetes.Interface) error {
	probe := []byte(`{"apiVersion":"storage.loft.sh/v1","kind":"VirtualCluster","metadata":{"generateName":"sublet-policy-probe-","namespace":"default"}}`)
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = cs.CoreV1().RESTClient().Post().AbsPath("/apis/storage.loft.sh/v1/namespaces/default/virtualclusters").
			Param("dryRun", metav1.DryRunAll).SetHeader("Content-Type", "application/json").Body(probe).Do(ctx).Error()
		return last == nil || !strings.Contains(last.Error(), "failed to configure") && !strings.Contains(last.Error(), "no params found"), nil
	})
	if err != nil {
		return fmt.Errorf("the admission policies are not in force after a minute: %v", last)
	}
	return nil
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
