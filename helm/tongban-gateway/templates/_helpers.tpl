{{- define "gateway.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: tongban-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gateway.labels" -}}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tongban
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- /* The secret holding the gateway's certificate, and the key of the CA in it. */ -}}
{{- define "gateway.tlsSecret" -}}
{{- if .Values.certManager.enabled -}}{{ include "gateway.fullname" . }}-tls{{- else -}}{{ .Values.tls.secretName }}{{- end -}}
{{- end -}}
{{- define "gateway.caKey" -}}
{{- if .Values.certManager.enabled -}}ca.crt{{- else -}}{{ .Values.tls.caKey }}{{- end -}}
{{- end -}}

{{- /*
The gateway's config: `config` from the values, with what the chart decides laid over
it (the schema refuses those keys in `config`, so nothing is overridden silently).
*/ -}}
{{- define "gateway.config" -}}
{{- $v := .Values -}}
{{- $tls := dict "ca" "/etc/tongban/tls/ca.pem" "cert" "/etc/tongban/tls/tls.crt" "key" "/etc/tongban/tls/tls.key" -}}
{{- if $v.tls.crl.secretName -}}
{{- $_ := set $tls "crl" "/etc/tongban/tls/crl.pem" -}}
{{- end -}}
{{- $chart := dict
  "listen" (printf "%s:%v" (include "gateway.host" $v.bindAddress) $v.ports.federation)
  "admin_listen" (printf "%s:%v" (include "gateway.host" $v.bindAddress) $v.ports.admin)
  "registry" "/etc/tongban/config/registry.toml"
  "tls" $tls
  "audit" (dict "file" "/var/lib/tongban/audit/gateway-{host}-audit.log")
-}}
{{- if $v.operators.enabled -}}
{{- $bind := ternary $v.bindAddress "127.0.0.1" $v.operators.exposeInCluster -}}
{{- $_ := set $chart "operators" (dict "listen" (printf "%s:%v" (include "gateway.host" $bind) $v.ports.operators) "roster" $v.operators.roster) -}}
{{- end -}}
{{- if $v.hashKey.secretName -}}
{{- $_ := set $chart "recognition" (dict "hash_key" (printf "/etc/tongban/hash-key/%s" $v.hashKey.key)) -}}
{{- end -}}
{{- $config := mergeOverwrite (deepCopy $v.config) $chart -}}
# Rendered by the tongban-gateway chart from its values (`config` and the chart's own
# settings); deploy/gateway.toml documents every key.
{{ include "tongban.toml" (dict "map" $config "path" "") | trim }}
{{- end -}}

{{- /* An address for host:port: IPv6 in brackets. */ -}}
{{- define "gateway.host" -}}
{{- if contains ":" . -}}[{{ . }}]{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{- /* registry.toml, rendered whole from `registry`. */ -}}
{{- define "gateway.registry" -}}
# The national registry, rendered by the tongban-gateway chart from its `registry`
# values; deploy/registry.toml documents every key.
{{ include "tongban.toml" (dict "map" (dict "region" .Values.registry) "path" "") | trim }}
{{- end -}}

{{- /* Replicas spread over hosts: preferred (soft), required (hard) or not at all. */ -}}
{{- define "gateway.affinity" -}}
{{- $anti := dict -}}
{{- $term := dict "topologyKey" .Values.topologyKey "labelSelector" (dict "matchLabels" (include "gateway.selectorLabels" . | fromYaml)) -}}
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
