package controlplane

import (
	"context"
	"fmt"
	"sync"
	"time"

	apiextensionsscheme "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/controller-manager/pkg/clientbuilder"
	"k8s.io/kube-openapi/pkg/validation/spec"
	cmconfig "k8s.io/kubernetes/cmd/kube-controller-manager/app/config"
	"k8s.io/kubernetes/pkg/controller/validatingadmissionpolicystatus"
	generatedopenapi "k8s.io/kubernetes/pkg/generated/openapi"
)

// policyStatusController is the controller-manager's controller of that
// name, which type-checks each ValidatingAdmissionPolicy's expressions
// against the schemas of the kinds it matches and writes what does not
// check to the policy's status.
const policyStatusController = "validatingadmissionpolicy-status-controller"

// runPolicyStatusController runs, in virtual mode, the ValidatingAdmissionPolicy
// status controller as kube-controller-manager does (same controller, clients
// of its service account, a discovery REST mapper reset every 30 s), but with
// the built-in kinds' schemas resolved from definitions built when a policy
// is checked, not at start: upstream's constructor builds all 1,500
// generated definitions and keeps them (7.5 MB of an idle virtual cluster's
// heap, which most clusters, with no policy, never use).
func runPolicyStatusController(ctx context.Context, c *cmconfig.CompletedConfig) error {
	var clients clientbuilder.ControllerClientBuilder = clientbuilder.SimpleControllerClientBuilder{ClientConfig: c.Kubeconfig}
	if c.ComponentConfig.KubeCloudShared.UseServiceAccountCredentials {
		clients = clientbuilder.NewDynamicClientBuilder(restclient.AnonymousClientConfig(c.Kubeconfig), c.Client.CoreV1(), metav1.NamespaceSystem)
	}
	client, err := clients.Client(policyStatusController)
	if err != nil {
		return fmt.Errorf("%s: %w", policyStatusController, err)
	}
	disco, err := clients.DiscoveryClient(policyStatusController)
	if err != nil {
		return fmt.Errorf("%s: %w", policyStatusController, err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	go wait.UntilWithContext(ctx, func(context.Context) { mapper.Reset() }, 30*time.Second)

	factory := informers.NewSharedInformerFactory(client, 0)
	ctrl, err := validatingadmissionpolicystatus.NewController(
		factory.Admissionregistration().V1().ValidatingAdmissionPolicies(),
		client.AdmissionregistrationV1().ValidatingAdmissionPolicies(),
		&validating.TypeChecker{
			SchemaResolver: &lazyDefinitionsResolver{
				build: func() *resolver.DefinitionsSchemaResolver {
					return resolver.NewDefinitionsSchemaResolver(generatedopenapi.GetOpenAPIDefinitions, scheme.Scheme, apiextensionsscheme.Scheme)
				},
				secondary: &resolver.ClientDiscoveryResolver{Discovery: disco},
				keep:      time.Minute,
			},
			RestMapper: mapper,
		})
	if err != nil {
		return fmt.Errorf("%s: %w", policyStatusController, err)
	}
	factory.Start(ctx.Done())
	ctrl.Run(ctx, int(c.ComponentConfig.ValidatingAdmissionPolicyStatusController.ConcurrentPolicySyncs))
	return nil
}

// lazyDefinitionsResolver resolves as a DefinitionsSchemaResolver combined
// with secondary does (the built-in definitions for the kinds they know,
// secondary for the rest), building the definitions on first use and
// dropping them keep after the last.
type lazyDefinitionsResolver struct {
	build     func() *resolver.DefinitionsSchemaResolver
	secondary resolver.SchemaResolver
	keep      time.Duration

	mu      sync.Mutex
	defs    *resolver.DefinitionsSchemaResolver
	lastUse time.Time
	drop    *time.Timer
	built   int // how many times the definitions were built, for tests
}

func (r *lazyDefinitionsResolver) ResolveSchema(gvk schema.GroupVersionKind) (*spec.Schema, error) {
	return r.definitions().Combine(r.secondary).ResolveSchema(gvk)
}

// definitions are the built definitions, built now if need be; they are
// dropped once unused for keep.
func (r *lazyDefinitionsResolver) definitions() *resolver.DefinitionsSchemaResolver {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastUse = time.Now()
	if r.defs == nil {
		r.defs = r.build()
		r.built++
		if r.drop == nil {
			r.drop = time.AfterFunc(r.keep, r.expire)
		} else {
			r.drop.Reset(r.keep)
		}
	}
	return r.defs
}

// expire drops the definitions if unused for keep, else waits again.
func (r *lazyDefinitionsResolver) expire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if left := r.keep - time.Since(r.lastUse); left > 0 {
		r.drop.Reset(left)
		return
	}
	r.defs = nil
}
