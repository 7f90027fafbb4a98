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
  "listen" (printf "%s:%v" (include "tongban.host" $v.bindAddress) $v.ports.federation)
  "admin_listen" (printf "%s:%v" (include "tongban.host" $v.bindAddress) $v.ports.admin)
  "registry" "/etc/tongban/config/registry.toml"
  "tls" $tls
  "audit" (dict "file" "/var/lib/tongban/audit/gateway-{host}-audit.log")
-}}
{{- if $v.operators.enabled -}}
{{- $bind := ternary $v.bindAddress "127.0.0.1" $v.operators.exposeInCluster -}}
{{- $_ := set $chart "operators" (dict "listen" (printf "%s:%v" (include "tongban.host" $bind) $v.ports.operators) "roster" $v.operators.roster) -}}
{{- end -}}
{{- if $v.hashKey.secretName -}}
{{- $_ := set $chart "recognition" (dict "hash_key" (printf "/etc/tongban/hash-key/%s" $v.hashKey.key)) -}}
{{- end -}}
{{- /* Featured one-things published and adopted through the gateway: replicas that
share a revocation log keep them in its database; a lone replica on its volume. */ -}}
{{- if and (eq (int $v.replicas) 1) (not $v.config.revocation_log) $v.audit.persistence.enabled -}}
{{- $_ := set $chart "catalog_ledger" "/var/lib/tongban/audit/catalog-ledger.jsonl" -}}
{{- end -}}
{{- $config := mergeOverwrite (deepCopy $v.config) $chart -}}
# Rendered by the tongban-gateway chart from its values (`config` and the chart's own
# settings); deploy/gateway.toml documents every key.
{{ include "tongban.toml" (dict "map" $config "path" "") | trim }}
{{- end -}}

{{- /* registry.toml, rendered whole from `registry`. */ -}}
{{- define "gateway.registry" -}}
# The national registry, rendered by the tongban-gateway chart from its `registry`
# values; deploy/registry.toml documents every key.
{{ include "tongban.toml" (dict "map" (dict "region" .Values.registry) "path" "") | trim }}
{{- end -}}
