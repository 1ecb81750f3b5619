package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/policy"
	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/values"
)

// Only the host admin loosens isolation. The cluster default template and
// templates are cluster-scoped, written by admins; a VirtualCluster's own
// values (written by whoever may create one in its namespace) may tighten
// every isolation setting they give and loosen none. Using a template that
// loosens isolation needs the `use` verb on it, checked at admission by the
// ValidatingAdmissionPolicy of config/policy (it reads whether the template
// loosens isolation from a ConfigMap templateLabeler keeps).

// ReasonLoosensIsolation is the condition and event reason of a
// VirtualCluster refused because it loosens isolation.
const ReasonLoosensIsolation = "LoosensIsolation"

// vars are what {name} and {namespace} in vc's host patterns stand for.
func vars(vc *storagev1.VirtualCluster) isolation.Vars {
	return isolation.Vars{Name: vc.Name, Namespace: vc.Namespace}
}

// loosens reports why vc may not run with eff (its effective values over
// tmpls), or "" if it may: its own values loosen a setting of its
// templates, or its template loosens isolation and appeared after vc (so
// admission never checked `use` on it for vc's creator).
func (r *reconciler) loosens(ctx context.Context, vc *storagev1.VirtualCluster, tmpls []template, eff *values.Effective) (string, error) {
	// The templates' values alone: what the admin set.
	base, err := values.Merge(templateLayers(tmpls)...)
	if err != nil {
		return "", err
	}
	if ls := looserThan(&eff.Values, &base.Values, vars(vc)); len(ls) > 0 {
		allowing, err := r.templatesAllowing(ctx, vc, &eff.Values)
		if err != nil {
			return "", err
		}
		return loosensMessage(ls, tmpls, allowing), nil
	}
	for _, t := range tmpls {
		if t.role == "template" && t.CreationTimestamp.After(vc.CreationTimestamp.Time) && templateLoosens(t.VirtualClusterTemplate) {
			return fmt.Sprintf("template %q loosens isolation and was created after this VirtualCluster, so admission could not check that its creator may `use` it; "+
				"delete the VirtualCluster and create it again (that needs the `use` verb on virtualclustertemplates %q)", t.Name, t.Name), nil
		}
	}
	return "", nil
}

// loosensMessage says what loosens what, who may loosen it, and how.
func loosensMessage(ls isolation.Loosenings, tmpls []template, allowing []string) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.String())
	}
	below := "the defaults"
	if len(tmpls) > 0 {
		var names []string
		for _, t := range tmpls {
			names = append(names, fmt.Sprintf("%s %q", t.role, t.Name))
		}
		below = strings.Join(names, " and ")
	}
	msg := fmt.Sprintf("spec.helmRelease.values loosens isolation, which only a host admin may do: %s (given by %s). Remove or tighten these settings",
		strings.Join(parts, "; "), below)
	if len(allowing) > 0 {
		msg += fmt.Sprintf(", or use a template that allows them (spec.templateRef.name: %s; that needs the `use` verb on it)", strings.Join(allowing, " or "))
	} else {
		msg += ", or ask a host admin for a template that allows them"
	}
	return msg
}

// templatesAllowing names the templates under which isolation own would
// loosen nothing (with the cluster default below them).
func (r *reconciler) templatesAllowing(ctx context.Context, vc *storagev1.VirtualCluster, own *values.Values) ([]string, error) {
	list := &storagev1.VirtualClusterTemplateList{}
	if err := r.client.List(ctx, list); err != nil {
		return nil, err
	}
	def, err := r.defaultTemplateName(ctx)
	if err != nil {
		return nil, err
	}
	var defaultLayer []values.Layer
	for _, t := range list.Items {
		if t.Name == def {
			defaultLayer = append(defaultLayer, values.Layer{Source: "default", YAML: t.Spec.Template.HelmRelease.Values})
		}
	}
	var out []string
	for _, t := range list.Items {
		if t.Name == def {
			continue
		}
		base, err := values.Merge(append(defaultLayer, values.Layer{Source: t.Name, YAML: t.Spec.Template.HelmRelease.Values})...)
		if err != nil {
			continue
		}
		if len(looserThan(own, &base.Values, vars(vc))) == 0 {
			out = append(out, fmt.Sprintf("%q", t.Name))
		}
	}
	sort.Strings(out)
	return out, nil
}

// templateLoosens reports whether t's values loosen an isolation setting
// of the defaults; values that do not parse count as loosening.
func templateLoosens(t *storagev1.VirtualClusterTemplate) bool {
	own, err := values.Merge(values.Layer{Source: "template", YAML: t.Spec.Template.HelmRelease.Values})
	if err != nil {
		return true
	}
	defaults, err := values.Merge()
	if err != nil {
		return true
	}
	return len(looserThan(&own.Values, &defaults.Values, isolation.Vars{})) > 0
}

// looserThan lists where values own allow more than base: isolation, and
// custom resource rows (a row lets the tenant write a host kind).
func looserThan(own, base *values.Values, v isolation.Vars) isolation.Loosenings {
	return append(own.Isolation.LooserThan(base.Isolation, v), own.CustomLooserThan(base)...)
}

// templateLabeler keeps, for every template, LabelLoosensIsolation on it
// and its entry in the admission policy's parameter (ConfigMap
// policy.TemplateIsolation): "true" if it loosens isolation, else "false".
type templateLabeler struct {
	client     client.Client
	configMaps typedcorev1.ConfigMapInterface
}

func (l *templateLabeler) label(ctx context.Context, name string) error {
	t := &storagev1.VirtualClusterTemplate{}
	if err := l.client.Get(ctx, client.ObjectKey{Name: name}, t); err != nil {
		if apierrors.IsNotFound(err) {
			return l.record(ctx, name, "")
		}
		return err
	}
	want := fmt.Sprint(templateLoosens(t))
	if err := l.record(ctx, name, want); err != nil {
		return err
	}
	if t.Labels[storagev1.LabelLoosensIsolation] == want {
		return nil
	}
	patch := client.MergeFrom(t.DeepCopy())
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[storagev1.LabelLoosensIsolation] = want
	if err := l.client.Patch(ctx, t, patch); err != nil {
		return fmt.Errorf("label template %s %s=%s: %w", name, storagev1.LabelLoosensIsolation, want, err)
	}
	return nil
}

// record sets template name's entry in the policy's parameter ("" removes
// it: a template not listed counts as loosening).
func (l *templateLabeler) record(ctx context.Context, name, loosens string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := l.configMaps.Get(ctx, policy.TemplateIsolation, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the admission policy's parameter: %w", err)
		}
		if have, ok := cm.Data[name]; ok == (loosens != "") && have == loosens {
			return nil
		}
		if loosens == "" {
			delete(cm.Data, name)
		} else {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[name] = loosens
		}
		if _, err := l.configMaps.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("record template %s in the admission policy's parameter: %w", name, err)
		}
		return nil
	})
}
