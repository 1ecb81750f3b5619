package kinds

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Custom is a row the values add to the table: a custom resource the host
// serves through a CRD, synced by the one generic mirror. Values name it
// under sync.toHost.customResources (the tenant's objects go to the host,
// status comes back) or sync.fromHost.customResources (the host's objects
// of a cluster-scoped kind are copied in, read-only). The runtime gets the
// rows as one flag (FormatCustom, ParseCustom).
type Custom struct {
	// CRD is the CustomResourceDefinition's name, PLURAL.GROUP
	// (certificates.cert-manager.io).
	CRD string `json:"crd"`
	// FromHost: copied from the host; else synced to the host.
	FromHost bool `json:"fromHost,omitempty"`
	// References are the fields of a to-host object that name other
	// objects of its namespace.
	References []Reference `json:"references,omitempty"`
	// Fields pin fields of a to-host object to values.
	Fields []FieldRule `json:"fields,omitempty"`
}

// FieldRule pins a field of a custom object: the object reaches the host
// only if the field holds one of Values ("" stands for the field unset).
// It keeps fields that name what a reference cannot translate to a safe
// choice (a Certificate's spec.issuerRef.kind: ClusterIssuer, the host's).
type FieldRule struct {
	// Path to the field, as a Reference's.
	Path string `json:"path"`
	// Values the field may hold.
	Values []string `json:"values"`
}

// Reference is a field of a custom object that names an object of the
// object's namespace. The host copy names that object's host copy.
type Reference struct {
	// Path to the field: names separated by dots; NAME[] walks every
	// element of a list (spec.tls[].secretName).
	Path string `json:"path"`
	// Kind of the object named. A Secret or ConfigMap of the tenant's is
	// copied to the host while an object names it; any other kind (an
	// Issuer of another row) is only renamed, so the host copy never names
	// an object of another owner.
	Kind string `json:"kind"`
	// Returned: the host's controller writes the named Secret (a
	// Certificate's); the syncer copies it back into the virtual cluster.
	// Else the tenant's object is copied to the host for it.
	Returned bool `json:"returned,omitempty"`
	// Optional: an object without the field is synced; else it is refused.
	Optional bool `json:"optional,omitempty"`
}

// CopiedKinds are the kinds whose tenant objects a Reference copies to the
// host.
var CopiedKinds = []string{"ConfigMap", "Secret"}

// kindName is a Kind's name.
var kindName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// pathSegment is one name of a reference's path, with [] for a list.
var pathSegment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\[\])?$`)

// GroupResource is the resource the CRD serves (its name split at the
// first dot).
func (c Custom) GroupResource() schema.GroupResource {
	resource, group, _ := strings.Cut(c.CRD, ".")
	return schema.GroupResource{Group: group, Resource: resource}
}

// Direction is where the row syncs to, as values spell it.
func (c Custom) Direction() string {
	if c.FromHost {
		return "fromHost"
	}
	return "toHost"
}

// ValuesPath is the row's place in values, for messages.
func (c Custom) ValuesPath() string {
	return "sync." + c.Direction() + ".customResources." + c.CRD
}

// Row is the row's place in the table. Its Host names group and resource;
// the version and Kind come from the host's CRD when the syncer reads it.
func (c Custom) Row() Kind {
	gr := c.GroupResource()
	k := Kind{Name: c.CRD, CRD: c.CRD, Host: gr.WithVersion(""), FromHost: c.FromHost, ClusterScoped: c.FromHost,
		DeleteWithCluster: !c.FromHost, Verbs: write(), Off: c.ValuesPath() + ".enabled: false"}
	if c.FromHost {
		k.Verbs = read()
	}
	return k
}

// FitsScope says why a custom resource row (from Row) cannot sync a kind
// of scope (a CRD's spec.scope): a to-host kind must be namespaced (its
// objects go to the host namespace), a from-host kind cluster-scoped.
func (k Kind) FitsScope(scope string) error {
	where := strings.TrimSuffix(k.Off, ".enabled: false")
	switch {
	case k.FromHost && scope != "Cluster":
		return fmt.Errorf("%s: the host's %s is %s-scoped; only cluster-scoped kinds are copied from the host. "+
			"Sync it to the host instead (sync.toHost.customResources), or turn the row off with %s", where, k.CRD, scope, k.OffValue())
	case !k.FromHost && scope != "Namespaced":
		return fmt.Errorf("%s: the host's %s is %s-scoped; a virtual cluster writes only into its host namespace. "+
			"Copy it from the host instead (sync.fromHost.customResources), or turn the row off with %s", where, k.CRD, scope, k.OffValue())
	}
	return nil
}

// Validate says what is wrong with a row, naming its values path.
func (c Custom) Validate() error {
	gr := c.GroupResource()
	if gr.Group == "" || len(validation.IsDNS1123Label(gr.Resource)) > 0 || len(validation.IsDNS1123Subdomain(gr.Group)) > 0 {
		return fmt.Errorf("%s: not the name of a CustomResourceDefinition (PLURAL.GROUP, e.g. certificates.cert-manager.io)", c.ValuesPath())
	}
	if _, builtin := builtinGroups[gr.Group]; builtin {
		return fmt.Errorf("%s: group %s is Kubernetes' own; only kinds served by a CRD may be rows", c.ValuesPath(), gr.Group)
	}
	for _, k := range All() {
		if k.CRD == c.CRD {
			return fmt.Errorf("%s: already a built-in kind (sync.%s)", c.ValuesPath(), k.Name)
		}
	}
	if c.FromHost && (len(c.References) > 0 || len(c.Fields) > 0) {
		return fmt.Errorf("%s: only kinds synced to the host take references and fields", c.ValuesPath())
	}
	for i, f := range c.Fields {
		where := fmt.Sprintf("%s.fields[%d]", c.ValuesPath(), i)
		if _, err := SplitPath(f.Path); err != nil {
			return fmt.Errorf("%s.path: %w", where, err)
		}
		if len(f.Values) == 0 {
			return fmt.Errorf("%s.values: give the values the field may hold (\"\" for unset)", where)
		}
	}
	for i, r := range c.References {
		where := fmt.Sprintf("%s.references[%d]", c.ValuesPath(), i)
		if !kindName.MatchString(r.Kind) {
			return fmt.Errorf("%s.kind: %q is not a kind's name (Secret, ConfigMap, or a kind such as Issuer)", where, r.Kind)
		}
		if r.Returned && r.Kind != "Secret" {
			return fmt.Errorf("%s.returned: only Secrets are returned from the host (a %s is not)", where, r.Kind)
		}
		if _, err := SplitPath(r.Path); err != nil {
			return fmt.Errorf("%s.path: %w", where, err)
		}
	}
	return nil
}

// builtinGroups are API groups the API server serves itself.
var builtinGroups = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, g := range []string{"apps", "batch", "policy", "autoscaling", "extensions", "admissionregistration.k8s.io",
		"apiextensions.k8s.io", "apiregistration.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "certificates.k8s.io",
		"coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io", "internal.apiserver.k8s.io",
		"networking.k8s.io", "node.k8s.io", "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io",
		"storagemigration.k8s.io"} {
		m[g] = struct{}{}
	}
	return m
}()

// PathStep is one step of a reference's path: a field, and whether it is a
// list whose every element the rest of the path walks.
type PathStep struct {
	Field string
	List  bool
}

// SplitPath reads a reference's path (spec.tls[].secretName).
func SplitPath(p string) ([]PathStep, error) {
	if p == "" {
		return nil, fmt.Errorf("empty; give the field's path, e.g. spec.secretName")
	}
	var out []PathStep
	for _, s := range strings.Split(p, ".") {
		if !pathSegment.MatchString(s) {
			return nil, fmt.Errorf("%q: %q is not a field name (names separated by dots, NAME[] for every element of a list)", p, s)
		}
		name, list := strings.CutSuffix(s, "[]")
		out = append(out, PathStep{Field: name, List: list})
	}
	if out[0].Field != "spec" {
		return nil, fmt.Errorf("%q: must start at spec (only the spec goes to the host)", p)
	}
	if out[len(out)-1].List {
		return nil, fmt.Errorf("%q: must end at a name field, not a list", p)
	}
	return out, nil
}

// FormatCustom is rows as the runtime's flag carries them.
func FormatCustom(rows []Custom) string {
	b, _ := json.Marshal(rows)
	return string(b)
}

// ParseCustom reads rows from the runtime's flag and validates them.
func ParseCustom(s string) ([]Custom, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var rows []Custom
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rows); err != nil {
		return nil, fmt.Errorf("not a JSON list of custom resource rows: %w", err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if seen[r.CRD] {
			return nil, fmt.Errorf("%s: given twice (a kind syncs one way)", r.CRD)
		}
		seen[r.CRD] = true
	}
	return rows, nil
}

// CustomHostRules are the rights rows need in the host namespace: writing
// the to-host kinds' objects (their status comes back by reading them).
// The objects references name are Secrets and ConfigMaps, which
// HostRules covers.
func CustomHostRules(rows []Custom) []rbacv1.PolicyRule {
	byGroup := map[string][]string{}
	for _, r := range rows {
		if !r.FromHost {
			gr := r.GroupResource()
			byGroup[gr.Group] = append(byGroup[gr.Group], gr.Resource)
		}
	}
	var out []rbacv1.PolicyRule
	for _, g := range sortedGroups(byGroup) {
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: byGroup[g], Verbs: write()})
	}
	return out
}

// CustomClusterRules are the cluster-wide rights rows need: reading their
// CRDs by name, and reading every object of the from-host kinds.
func CustomClusterRules(rows []Custom) []rbacv1.PolicyRule {
	byGroup := map[string][]string{}
	var crds []string
	for _, r := range rows {
		crds = append(crds, r.CRD)
		if r.FromHost {
			gr := r.GroupResource()
			byGroup[gr.Group] = append(byGroup[gr.Group], gr.Resource)
		}
	}
	if len(crds) == 0 {
		return nil
	}
	sort.Strings(crds)
	out := []rbacv1.PolicyRule{{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"},
		ResourceNames: crds, Verbs: read()}}
	for _, g := range sortedGroups(byGroup) {
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: byGroup[g], Verbs: read()})
	}
	return out
}

func sortedGroups(m map[string][]string) []string {
	var out []string
	for g, rs := range m {
		sort.Strings(rs)
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}
