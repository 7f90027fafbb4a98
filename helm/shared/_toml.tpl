{{- /*
Renders a map as TOML, the format of the gateway's and the node's config files.
Helm's own toToml writes every number as a float (`worker_threads = 1.0`), which the
binaries refuse, so this writes integers as integers. Keys in order: a table's plain
values, then its tables, then its arrays of tables; a null value is left out (so a
values file can unset a default). Shared by both charts (each links this file).
Call: include "tongban.toml" (dict "map" $config "path" "")
*/ -}}
{{- define "tongban.toml" -}}
{{- $path := .path -}}
{{- range $key, $value := .map -}}
{{- if and (not (kindIs "invalid" $value)) (not (kindIs "map" $value)) (not (include "tongban.toml.isTables" $value)) }}
{{ include "tongban.toml.key" $key }} = {{ include "tongban.toml.value" $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := .map -}}
{{- if kindIs "map" $value -}}
{{- $sub := include "tongban.toml.path" (list $path $key) }}

[{{ $sub }}]
{{- include "tongban.toml" (dict "map" $value "path" $sub) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := .map -}}
{{- if include "tongban.toml.isTables" $value -}}
{{- $sub := include "tongban.toml.path" (list $path $key) -}}
{{- range $value }}

[[{{ $sub }}]]
{{- include "tongban.toml" (dict "map" . "path" $sub) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* "true" when the value is a non-empty list of maps (an array of tables). */ -}}
{{- define "tongban.toml.isTables" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}
{{- if kindIs "map" (first .) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tongban.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "tongban.toml.path" -}}
{{- $parent := index . 0 -}}
{{- $key := include "tongban.toml.key" (index . 1) -}}
{{- if $parent -}}{{ $parent }}.{{ $key }}{{- else -}}{{ $key }}{{- end -}}
{{- end -}}

{{- define "tongban.toml.value" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (floor .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) -}}
{{ . }}
{{- else if kindIs "slice" . -}}
[{{- range $i, $item := . -}}{{- if $i }}, {{ end -}}{{ include "tongban.toml.value" $item }}{{- end -}}]
{{- else -}}
{{- fail (printf "cannot render %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}
