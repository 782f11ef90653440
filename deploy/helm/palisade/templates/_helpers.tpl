{{/* The image every role runs. */}}
{{- define "palisade.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The labels of a component's objects and pods. */}}
{{- define "palisade.labels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: palisade
{{- end }}

{{/* The configuration volume mount every Deployment has. */}}
{{- define "palisade.configMount" -}}
- name: config
  mountPath: /etc/palisade/palisade.toml
  subPath: palisade.toml
  readOnly: true
{{- end }}

{{/* The container security context of the unprivileged roles. */}}
{{- define "palisade.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}
