// Package values parses and validates the values of a virtual cluster (the
// YAML in a VirtualCluster's spec.helmRelease.values and in templates),
// merges layers of them, and turns the result into `sublet vcluster run`
// flags. Parsing is strict: an unknown key, a wrong type or an invalid
// value is an error naming its path, never silently ignored.
package values

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// Values are a virtual cluster's settings. The README's "Values reference"
// documents every key.
type Values struct {
	VirtualCluster VirtualCluster          `json:"virtualCluster,omitempty"`
	Syncer         Syncer                  `json:"syncer,omitempty"`
	Sync           map[string]SyncResource `json:"sync,omitempty"`
	Isolation      Isolation               `json:"isolation,omitempty"`
}

// VirtualCluster configures the control plane.
type VirtualCluster struct {
	// Image's tag chooses the Kubernetes version (rancher/k3s:v1.21.2-k3s1
	// asks for 1.21.2); Sublet runs its own binary, not the image.
	Image string `json:"image,omitempty"`
	// ExtraArgs: --service-cidr=CIDR, --datastore=sqlite|etcd, and API
	// server flags on an allow list
	// (also in k3s's --kube-apiserver-arg=NAME=VALUE form).
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// Syncer configures the syncer.
type Syncer struct {
	// ExtraArgs: --disable-sync-resources=A,B and --sync=A,B.
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// SyncResource turns one syncer on or off.
type SyncResource struct {
	Enabled *bool `json:"enabled,omitempty"`
	// Selector, for a kind copied from the host (its classes), picks the
	// host objects the cluster sees by their labels.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// CustomResources, under the keys toHost and fromHost only, are rows
	// of custom resources (custom.go).
	CustomResources map[string]CustomResource `json:"customResources,omitempty"`
}

// Isolation is the host-side containment of a virtual cluster: its Pod
// Security level (checked by the syncer), the ResourceQuota, LimitRange
// and NetworkPolicy the agent keeps in its host namespace (each on with
// isolation.enabled or its own enabled), and the policies of what reaches
// the host. Only the host admin loosens it: a VirtualCluster's own values
// may only tighten what the cluster default and its template set
// (LooserThan).
type Isolation struct {
	Enabled             bool                   `json:"enabled,omitempty"`
	PodSecurityStandard string                 `json:"podSecurityStandard,omitempty"`
	ResourceQuota       IsolationQuota         `json:"resourceQuota,omitempty"`
	LimitRange          IsolationLimitRange    `json:"limitRange,omitempty"`
	NetworkPolicy       IsolationNetworkPolicy `json:"networkPolicy,omitempty"`
	// Policy is what the syncer and the egress guard enforce on what the
	// tenant writes (services, endpoints, ingresses, pods, egress).
	isolation.Policy
}

// PodSecurityLevel is the Pod Security Standard the cluster's pods must
// meet: podSecurityStandard, or the syncer's default when unset.
func (i Isolation) PodSecurityLevel() string {
	if i.PodSecurityStandard == "" {
		return kinds.DefaultPodSecurityStandard
	}
	return i.PodSecurityStandard
}

// IsolationQuota is a resource quota for the host namespace.
type IsolationQuota struct {
	Enabled bool                `json:"enabled,omitempty"`
	Quota   map[string]Quantity `json:"quota,omitempty"`
}

// IsolationLimitRange sets default container resources.
type IsolationLimitRange struct {
	Enabled        bool                `json:"enabled,omitempty"`
	Default        map[string]Quantity `json:"default,omitempty"`
	DefaultRequest map[string]Quantity `json:"defaultRequest,omitempty"`
}

// IsolationNetworkPolicy confines the virtual cluster's host pods.
type IsolationNetworkPolicy struct {
	Enabled bool `json:"enabled,omitempty"`
	// AllowIngressFromNamespaces are host namespaces whose pods may reach
	// the virtual cluster's pods (the ingress controller's); nil means
	// DefaultIngressNamespaces, an empty list none.
	AllowIngressFromNamespaces []string `json:"allowIngressFromNamespaces,omitempty"`
}

// Defaults of the host-side guard rails, when isolation asks for them
// without giving their values (the README's values table lists them).
var (
	DefaultQuota = map[string]string{
		"requests.cpu": "10", "requests.memory": "20Gi", "limits.cpu": "20", "limits.memory": "40Gi",
		"requests.storage": "100Gi", "count/pods": "50", "count/services": "20", "services.nodeports": "0",
		"services.loadbalancers": "1", "count/persistentvolumeclaims": "20", "count/configmaps": "100", "count/secrets": "100",
	}
	DefaultLimit             = map[string]string{"cpu": "1", "memory": "512Mi", "ephemeral-storage": "8Gi"}
	DefaultLimitRequest      = map[string]string{"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"}
	DefaultIngressNamespaces = []string{"ingress-nginx"}
)

// Layer is one source of values: defaults, a template, the object.
type Layer struct {
	// Source names the layer in errors, e.g. `template "small"`.
	Source string
	// YAML is the values document ("" for none).
	YAML string
}

// Effective are the merged, validated values of a virtual cluster.
type Effective struct {
	Values Values
	// YAML is the merged document, for status and `-o yaml`.
	YAML string
	// Version is what the image asks for and what runs.
	Version Version
}

// Merge parses each layer strictly, merges them in order (maps merge key by
// key, a later scalar or list replaces an earlier one) and validates the
// result. Errors name the layer and the path.
func Merge(layers ...Layer) (*Effective, error) {
	merged := map[string]interface{}{}
	var errs []error
	for _, l := range layers {
		if strings.TrimSpace(l.YAML) == "" {
			continue
		}
		m, err := parseStrict(l.YAML)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Source, err))
			continue
		}
		mergeInto(merged, m)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	raw, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	var v Values
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	if errs := Validate(&v); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	out, err := yaml.JSONToYAML(raw)
	if err != nil {
		return nil, err
	}
	ver, _ := ParseVersion(v.VirtualCluster.Image)
	return &Effective{Values: v, YAML: string(out), Version: ver}, nil
}

// Parse reads one values document strictly (see Merge) into a map, for
// callers that combine documents themselves.
func Parse(doc string) (map[string]interface{}, error) {
	return parseStrict(doc)
}

// parseStrict reads one YAML document of values: it must be a map, and
// every key and type must be known.
func parseStrict(doc string) (map[string]interface{}, error) {
	if err := checkDocument(doc); err != nil {
		return nil, err
	}
	raw, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return map[string]interface{}{}, nil
	}
	// Map entries first: encoding/json's errors leave out map keys.
	var generic map[string]json.RawMessage
	if json.Unmarshal(raw, &generic) == nil {
		var sync map[string]json.RawMessage
		if json.Unmarshal(generic["sync"], &sync) == nil {
			for _, name := range sortedKeys(sync) {
				var r SyncResource
				if _, err := sjson.UnmarshalStrict(sync[name], &r); err != nil {
					return nil, fmt.Errorf("sync.%s.%w", name, typeError(err))
				}
			}
		}
	}
	var v Values
	strict, err := sjson.UnmarshalStrict(raw, &v)
	if err != nil {
		return nil, typeError(err)
	}
	if len(strict) > 0 {
		var msgs []string
		for _, e := range strict {
			msgs = append(msgs, e.Error())
		}
		return nil, fmt.Errorf("%s (see the README's \"Values reference\")", strings.Join(msgs, "; "))
	}
	// Numbers keep their literal text (8589934592 stays exact).
	var m map[string]interface{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// typeError rewrites encoding/json's type errors to name the value path.
func typeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: must be %s, not a %s", te.Field, describeType(te.Type.String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if strings.Contains(err.Error(), "cannot unmarshal") {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return err
}

func describeType(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "values."):
		return "a map"
	case t == "*bool" || t == "bool":
		return "true or false"
	}
	return "a " + t
}

func mergeInto(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dm, sm)
				continue
			}
			cp := map[string]interface{}{}
			mergeInto(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = v
	}
}

// apiServerFlags are the kube-apiserver flags values may set.
var apiServerFlags = map[string]bool{
	"event-ttl": true, "default-not-ready-toleration-seconds": true, "default-unreachable-toleration-seconds": true,
	"enable-admission-plugins": true, "disable-admission-plugins": true, "max-requests-inflight": true,
	"max-mutating-requests-inflight": true, "min-request-timeout": true, "request-timeout": true,
	"service-node-port-range": true, "service-account-max-token-expiration": true, "audit-log-maxage": true,
}

func allowedAPIServerFlags() string {
	var names []string
	for n := range apiServerFlags {
		names = append(names, "--"+n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// flagArg splits "--name=value"; ok is false for anything else.
func flagArg(a string) (name, value string, ok bool) {
	if !strings.HasPrefix(a, "--") {
		return "", "", false
	}
	name, value, ok = strings.Cut(strings.TrimPrefix(a, "--"), "=")
	return name, value, ok && name != ""
}

// Validate checks values that parse but are wrong.
func Validate(v *Values) field.ErrorList {
	errs := validateVirtualCluster(v)
	errs = append(errs, validateSync(v)...)
	errs = append(errs, validateCustom(v)...)
	return append(errs, validateIsolation(v)...)
}

// validateVirtualCluster checks virtualCluster.image and .extraArgs.
func validateVirtualCluster(v *Values) field.ErrorList {
	var errs field.ErrorList
	vc := field.NewPath("virtualCluster")
	if _, err := ParseVersion(v.VirtualCluster.Image); err != nil {
		errs = append(errs, field.Invalid(vc.Child("image"), v.VirtualCluster.Image, err.Error()))
	}
	for i, a := range v.VirtualCluster.ExtraArgs {
		p := vc.Child("extraArgs").Index(i)
		name, value, ok := flagArg(a)
		switch {
		case !ok:
			errs = append(errs, field.Invalid(p, a, "must be --name=value"))
		case name == "service-cidr":
			if _, _, err := net.ParseCIDR(value); err != nil {
				errs = append(errs, field.Invalid(p, a, "not a CIDR (example: --service-cidr=10.96.0.0/16)"))
			}
		case name == "datastore":
			if value != "sqlite" && value != "etcd" {
				errs = append(errs, field.NotSupported(p, a, []string{"--datastore=sqlite", "--datastore=etcd"}))
			}
		case name == "kube-apiserver-arg":
			n, _, ok := strings.Cut(value, "=")
			if !ok || !apiServerFlags[n] {
				errs = append(errs, field.NotSupported(p, a, []string{"--kube-apiserver-arg=NAME=VALUE with NAME one of " + allowedAPIServerFlags()}))
			}
		case apiServerFlags[name]:
		default:
			errs = append(errs, field.NotSupported(p, a, []string{"--service-cidr=CIDR", "--datastore=sqlite|etcd", allowedAPIServerFlags()}))
		}
	}
	return errs
}

// validateIsolation checks isolation.*.
func validateIsolation(v *Values) field.ErrorList {
	var errs field.ErrorList
	iso := field.NewPath("isolation")
	switch v.Isolation.PodSecurityStandard {
	case "", "privileged", "baseline", "restricted":
	default:
		errs = append(errs, field.NotSupported(iso.Child("podSecurityStandard"), v.Isolation.PodSecurityStandard, []string{"privileged", "baseline", "restricted"}))
	}
	for i, ns := range v.Isolation.NetworkPolicy.AllowIngressFromNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, field.Invalid(iso.Child("networkPolicy", "allowIngressFromNamespaces").Index(i), ns, "not a namespace name"))
		}
	}
	errs = append(errs, v.Isolation.Policy.Validate(iso)...)
	for path, m := range map[*field.Path]map[string]Quantity{
		iso.Child("resourceQuota", "quota"):       v.Isolation.ResourceQuota.Quota,
		iso.Child("limitRange", "default"):        v.Isolation.LimitRange.Default,
		iso.Child("limitRange", "defaultRequest"): v.Isolation.LimitRange.DefaultRequest,
	} {
		for _, k := range sortedKeys(m) {
			q := string(m[k])
			if _, err := resource.ParseQuantity(q); err != nil {
				errs = append(errs, field.Invalid(path.Key(k), q, "not a quantity (examples: 4, 0.5, 500m, 8Gi)"))
			}
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RunArgs are the `sublet vcluster run` flags the values ask for.
func (e *Effective) RunArgs() []string {
	var args []string
	if e.Version.Run != "" {
		args = append(args, "--kubernetes-version=v"+e.Version.Run)
	}
	for _, a := range e.Values.VirtualCluster.ExtraArgs {
		name, value, _ := flagArg(a)
		switch {
		case name == "service-cidr":
			args = append(args, "--service-cidr="+value)
		case name == "datastore":
			args = append(args, "--datastore="+value)
		case name == "kube-apiserver-arg":
			args = append(args, "--apiserver-arg=--"+value)
		default:
			args = append(args, "--apiserver-arg="+a)
		}
	}
	if pss := e.Values.Isolation.PodSecurityStandard; pss != "" {
		args = append(args, "--pod-security-standard="+pss)
	}
	if i := e.Values.Isolation; i.Enabled || i.NetworkPolicy.Enabled {
		args = append(args, "--network-policy-isolation")
	}
	// The egress guard reads its own flag; the syncer the rest.
	p := e.Values.Isolation.Policy
	if cidrs := p.Egress.AllowedCIDRs; len(cidrs) > 0 {
		args = append(args, "--egress-allowed-cidrs="+strings.Join(cidrs, ","))
	}
	p.Egress = isolation.EgressPolicy{}
	if !p.IsZero() {
		args = append(args, "--isolation-policy="+p.String())
	}
	for _, name := range sortedKeys(e.Values.Sync) {
		if sel := e.Values.Sync[name].Selector; sel != nil {
			if s, err := metav1.LabelSelectorAsSelector(sel); err == nil {
				args = append(args, "--from-host-selector="+name+"="+s.String())
			}
		}
	}
	enable, disable := e.syncLists()
	if rows := e.Values.CustomResources(); len(rows) > 0 {
		args = append(args, "--custom-resources="+kinds.FormatCustom(rows))
	}
	if len(enable) > 0 {
		args = append(args, "--sync="+strings.Join(enable, ","))
	}
	if len(disable) > 0 {
		args = append(args, "--disable-sync-resources="+strings.Join(disable, ","))
	}
	return args
}
