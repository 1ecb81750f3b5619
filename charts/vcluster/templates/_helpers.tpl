{{/* Labels on every object of the release. */}}
{{- define "vcluster.labels" -}}
app.kubernetes.io/name: vcluster
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
sublet.dev/virtualcluster: {{ .Release.Name }}
{{- end -}}

{{- define "vcluster.selector" -}}
app.kubernetes.io/name: vcluster
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Name of the syncer's ServiceAccount, Role and RoleBinding. */}}
{{- define "vcluster.syncer" -}}vc-{{ .Release.Name }}-syncer{{- end -}}
