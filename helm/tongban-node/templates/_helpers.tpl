{{- /* The region's registry prefix: 440000 -> 44, 440300 -> 4403. */ -}}
{{- define "node.prefix" -}}
{{- regexReplaceAll "(00){1,2}$" (toString .Values.region) "" -}}
{{- end -}}

{{- /* Whether the pod needs the state volume: a SQLite store or the embedded platform. */ -}}
{{- define "node.needsState" -}}
{{- if or (eq .Values.store.kind "sqlite") (eq .Values.platform.kind "embedded") -}}true{{- end -}}
{{- end -}}

{{- /*
The node's config: `config` from the values, with what the chart decides laid over it
(the schema refuses those keys in `config`, so nothing is overridden silently).
*/ -}}
{{- define "node.config" -}}
{{- $v := .Values -}}
{{- $bind := include "tongban.host" $v.bindAddress -}}
{{- $tls := dict "ca" "/etc/tongban/tls/ca.pem" "cert" "/etc/tongban/tls/tls.crt" "key" "/etc/tongban/tls/tls.key" -}}
{{- if $v.tls.crl.secretName -}}
{{- $_ := set $tls "crl" "/etc/tongban/tls/crl.pem" -}}
{{- end -}}
{{- $store := "/var/lib/tongban/state/node.db" -}}
{{- if eq $v.store.kind "postgres" -}}
{{- $pg := $v.store.postgres -}}
{{- $store = dict "kind" "postgres" "url" $pg.url "lease" $pg.lease -}}
{{- if $pg.pool -}}{{- $_ := set $store "pool" $pg.pool -}}{{- end -}}
{{- if $pg.passwordSecret.name -}}
{{- $_ := set $store "password_file" (printf "/etc/tongban/db/%s" $pg.passwordSecret.key) -}}
{{- end -}}
{{- $dbTls := dict "mode" $pg.tls.mode -}}
{{- if $pg.tls.caSecret.name -}}
{{- $_ := set $dbTls "ca" (printf "/etc/tongban/db/%s" $pg.tls.caSecret.key) -}}
{{- end -}}
{{- if $pg.tls.clientCertSecret -}}
{{- $_ := set $dbTls "cert" "/etc/tongban/db/client/tls.crt" -}}
{{- $_ := set $dbTls "key" "/etc/tongban/db/client/tls.key" -}}
{{- end -}}
{{- $_ := set $store "tls" $dbTls -}}
{{- end -}}
{{- $platform := dict -}}
{{- if eq $v.platform.kind "embedded" -}}
{{- $e := $v.platform.embedded -}}
{{- $platform = dict "kind" "embedded" "database" "/var/lib/tongban/state/platform.db" "seed_residents" $e.seedResidents -}}
{{- if $e.autoApproveAfter -}}{{- $_ := set $platform "auto_approve_after" $e.autoApproveAfter -}}{{- end -}}
{{- else -}}
{{- $h := $v.platform.http -}}
{{- $ptls := dict "ca" (printf "/etc/tongban/platform/ca/%s" $h.caSecret.key) -}}
{{- if $h.clientCertSecret -}}
{{- $_ := set $ptls "cert" "/etc/tongban/platform/client/tls.crt" -}}
{{- $_ := set $ptls "key" "/etc/tongban/platform/client/tls.key" -}}
{{- end -}}
{{- if $h.serverName -}}{{- $_ := set $ptls "server_name" $h.serverName -}}{{- end -}}
{{- $auth := dict "kind" $h.auth.kind -}}
{{- $secretFile := printf "/etc/tongban/platform/auth/%s" $h.auth.secret.key -}}
{{- if eq $h.auth.kind "bearer" -}}
{{- $_ := set $auth "token_file" $secretFile -}}
{{- else if eq $h.auth.kind "hmac" -}}
{{- $_ := set $auth "app_key" $h.auth.appKey -}}
{{- $_ := set $auth "secret_file" $secretFile -}}
{{- end -}}
{{- $platform = mergeOverwrite (deepCopy $h.settings) (dict "kind" "http" "url" $h.url "tls" $ptls "auth" $auth) -}}
{{- end -}}
{{- $keys := list -}}
{{- range $v.issuer.keys -}}
{{- $key := dict "id" .id "file" (printf "/etc/tongban/issuer/%s" .key) -}}
{{- if .notBefore -}}{{- $_ := set $key "not_before" .notBefore -}}{{- end -}}
{{- $keys = append $keys $key -}}
{{- end -}}
{{- $peers := "/etc/tongban/config/registry.toml" -}}
{{- if $v.peers.existingConfigMap -}}{{- $peers = "/etc/tongban/peers/registry.toml" -}}{{- end -}}
{{- $chart := dict
  "region" (toString $v.region)
  "store" $store
  "listen" (dict "federation" (printf "%s:%v" $bind $v.ports.federation) "portal" (printf "%s:%v" $bind $v.ports.portal) "admin" (printf "%s:%v" $bind $v.ports.admin))
  "tls" $tls
  "gateway" (dict "endpoints" $v.gateway.endpoints "server_name" $v.gateway.serverName)
  "platform" $platform
  "issuer" (dict "keys" $keys "assertion_validity" $v.issuer.assertionValidity)
  "peers" (dict "registry" $peers "max_age" $v.peers.maxAge)
  "audit" (dict "file" "/var/lib/tongban/audit/node-{host}-audit.log")
-}}
{{- if $v.calendar.files -}}
{{- $_ := set $chart "calendar" (dict "folder" "/etc/tongban/calendar") -}}
{{- end -}}
{{- if $v.accessLog.portalSecret.name -}}
{{- $_ := set $chart "access_log" (dict "portal_secret" (printf "/etc/tongban/access-log/%s" $v.accessLog.portalSecret.key) "per_person_per_minute" $v.accessLog.perPersonPerMinute) -}}
{{- end -}}
{{- if $v.operators.enabled -}}
{{- $obind := ternary $bind "127.0.0.1" $v.operators.exposeInCluster -}}
{{- $_ := set $chart "operators" (dict "listen" (printf "%s:%v" $obind $v.ports.operators) "roster" $v.operators.roster) -}}
{{- end -}}
{{- $config := mergeOverwrite (deepCopy $v.config) $chart -}}
# Rendered by the tongban-node chart from its values (`config` and the chart's own
# settings); deploy/node-44.toml documents every key.
{{ include "tongban.toml" (dict "map" $config "path" "") | trim }}
{{- end -}}

{{- define "node.registry" -}}
# The node's copy of the national registry, rendered by the tongban-node chart from its
# `peers.registry` values; deploy/registry.toml documents every key.
{{ include "tongban.toml" (dict "map" (dict "region" .Values.peers.registry) "path" "") | trim }}
{{- end -}}
