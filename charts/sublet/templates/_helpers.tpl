{{/* Labels on every object of the release. */}}
{{- define "sublet.labels" -}}
app.kubernetes.io/name: sublet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of one component (agent, server). */}}
{{- define "sublet.selector" -}}
app.kubernetes.io/name: sublet
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image every component runs, and the pod runtime's virtual clusters too. */}}
{{- define "sublet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "sublet.agent" -}}{{ .Release.Name }}-agent{{- end -}}
{{- define "sublet.server" -}}{{ .Release.Name }}-server{{- end -}}
{{- define "sublet.cluster" -}}{{ .Release.Name }}-cluster{{- end -}}

{{/*
The namespace the server keeps connected clusters' kubeconfigs in
(internal/server.Namespace); the release lives there too.
*/}}
{{- define "sublet.namespace" -}}sublet-system{{- end -}}

{{/* Pod and container security contexts that pass the restricted Pod Security Standard. */}}
{{- define "sublet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "sublet.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Fails the install early on values the templates cannot serve. */}}
{{- define "sublet.validate" -}}
{{- if ne .Release.Namespace (include "sublet.namespace" .) -}}
{{- fail (printf "release namespace %q: install into namespace %s (helm install -n %s --create-namespace): the server keeps connected clusters' kubeconfigs there" .Release.Namespace (include "sublet.namespace" .) (include "sublet.namespace" .)) -}}
{{- end -}}
{{- with .Values.server.tls.secretName -}}
{{- /* Offline (helm template, --dry-run=client) lookup finds nothing, not even kube-system. */ -}}
{{- if and (lookup "v1" "Namespace" "" "kube-system") (not (lookup "v1" "Secret" $.Release.Namespace .)) -}}
{{- fail (printf "server.tls.secretName: Secret %q not found in namespace %s; create it (a kubernetes.io/tls Secret with tls.crt and tls.key) or leave server.tls.secretName empty for a generated certificate" . $.Release.Namespace) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Rules on the custom resources .names (CRD names, PLURAL.GROUP) with
.verbs, one rule per API group, groups and resources sorted as the agent
sorts the rules it grants (kinds.CustomHostRules, CustomClusterRules).
*/}}
{{- define "sublet.customResourceRules" -}}
{{- $byGroup := dict -}}
{{- range (.names | sortAlpha | uniq) -}}
{{- $crd := splitn "." 2 . -}}
{{- $_ := set $byGroup $crd._1 (append (get $byGroup $crd._1 | default list) $crd._0) -}}
{{- end -}}
{{- range $group := keys $byGroup | sortAlpha }}
- apiGroups: [{{ $group }}]
  resources: [{{ get $byGroup $group | join ", " }}]
  verbs: [{{ $.verbs }}]
{{- end -}}
{{- end -}}
