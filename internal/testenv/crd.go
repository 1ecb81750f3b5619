package testenv

import (
	"fmt"
	"strings"
)

// OpenCRD is the YAML of a CustomResourceDefinition of group that keeps
// any spec and status (served and stored as v1, with a status
// subresource), for tests and benchmarks that play a host's controller.
func OpenCRD(group, plural, kind, scope string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: %[1]s.%[4]s}
spec:
  group: %[4]s
  scope: %[3]s
  names: {plural: %[1]s, singular: %[5]s, kind: %[2]s, listKind: %[2]sList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
`, plural, kind, scope, group, strings.ToLower(kind))
}
