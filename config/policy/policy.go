// Package policy embeds the admission policies Sublet installs on a host
// cluster beside its CRDs: today the ValidatingAdmissionPolicy that lets
// only those allowed the `use` verb on a template that loosens isolation
// create VirtualClusters with it. The YAML files also work with a plain
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

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Install creates or updates the embedded policies and their bindings.
func Install(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	policies, bindings, err := Objects()
	if err != nil {
		return err
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
	return nil
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
