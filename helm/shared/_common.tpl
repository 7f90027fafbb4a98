{{- /*
What both charts name alike, linked into each chart's templates (as _toml.tpl is):
names and labels (the app name is the chart's own), the TLS secret, host:port
addresses and how replicas spread over hosts.
*/ -}}

{{- define "tongban.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tongban.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tongban.labels" -}}
{{ include "tongban.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tongban
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- /* The secret holding the member's certificate, and the key of the CA in it. */ -}}
{{- define "tongban.tlsSecret" -}}
{{- if .Values.certManager.enabled -}}{{ include "tongban.fullname" . }}-tls{{- else -}}{{ .Values.tls.secretName }}{{- end -}}
{{- end -}}
{{- define "tongban.caKey" -}}
{{- if .Values.certManager.enabled -}}ca.crt{{- else -}}{{ .Values.tls.caKey }}{{- end -}}
{{- end -}}

{{- /* An address for host:port: IPv6 in brackets. */ -}}
{{- define "tongban.host" -}}
{{- if contains ":" . -}}[{{ . }}]{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{- /* Replicas spread over hosts: preferred (soft), required (hard) or not at all. */ -}}
{{- define "tongban.affinity" -}}
{{- $anti := dict -}}
{{- $term := dict "topologyKey" .Values.topologyKey "labelSelector" (dict "matchLabels" (include "tongban.selectorLabels" . | fromYaml)) -}}
{{- if eq .Values.antiAffinity "hard" -}}
{{- $anti = dict "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else if eq .Values.antiAffinity "soft" -}}
{{- $anti = dict "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- $affinity := mergeOverwrite $anti (deepCopy .Values.affinity) -}}
{{- if $affinity }}
affinity:
  {{- toYaml $affinity | nindent 2 }}
{{- end }}
{{- end -}}
