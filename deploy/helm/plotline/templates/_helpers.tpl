{{/*
Where each service lives under the URL prefix: a copy of SERVICE_PREFIXES in
services/common/names.py (scripts/helm_lint.py checks the rendered Ingress against it).
Every per-service template ranges over this table.
*/}}
{{- define "plotline.routes" -}}
auth: /api/v1/auth
docs: /api/v1/docs
data: /api/v1/data
push: /ws
{{- end }}

{{/* Services that keep blobs (documents, column chunks). */}}
{{- define "plotline.blobServices" -}}
[docs, data]
{{- end }}

{{- define "plotline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; components append -<service>, so keep room for it. */}}
{{- define "plotline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 58 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 58 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 58 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of one service's Deployment, Service, HPA and PDB. Takes (list $ "auth"). */}}
{{- define "plotline.component" -}}
{{- printf "%s-%s" (include "plotline.fullname" (index . 0)) (index . 1) }}
{{- end }}

{{- define "plotline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plotline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plotline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "plotline.labels" -}}
helm.sh/chart: {{ include "plotline.chart" . }}
{{ include "plotline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plotline
{{- end }}

{{/* Labels of one service's objects. Takes (list $ "auth"). */}}
{{- define "plotline.componentLabels" -}}
{{ include "plotline.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "plotline.componentSelectorLabels" -}}
{{ include "plotline.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "plotline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plotline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "plotline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The URL prefix without a trailing slash ("" for the root). */}}
{{- define "plotline.prefix" -}}
{{- trimSuffix "/" .Values.urlPrefix }}
{{- end }}

{{/* The Secret this chart creates for secrets given inline in the values. */}}
{{- define "plotline.secretName" -}}
{{- include "plotline.fullname" . }}
{{- end }}

{{- define "plotline.tls" -}}
{{- if .Values.ingress.enabled }}{{ if .Values.ingress.tls }}true{{ end }}{{ end }}
{{- end }}

{{- define "plotline.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- trimSuffix "/" .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- printf "%s://%s%s" (ternary "https" "http" (eq (include "plotline.tls" .) "true")) (first .Values.ingress.hosts) (include "plotline.prefix" .) }}
{{- end }}
{{- end }}

{{/*
A secretKeyRef to an existing Secret or to the chart's own. Takes
(list $ .Values.redis "redis-url"): the section's existingSecret/existingSecretKey, else
the chart Secret under the given key.
*/}}
{{- define "plotline.secretRef" -}}
{{- $root := index . 0 }}{{ $section := index . 1 }}
secretKeyRef:
  name: {{ $section.existingSecret | default (include "plotline.secretName" $root) }}
  key: {{ ternary $section.existingSecretKey (index . 2) (ne $section.existingSecret "") }}
{{- end }}

{{/* The NATS user of a service: a copy of nats_user in services/common/names.py
(scripts/helm_lint.py checks the rendered one against it). Takes the service name. */}}
{{- define "plotline.natsUser" -}}
{{- printf "plotline-%s" . }}
{{- end }}

{{- define "plotline.hasAzure" -}}
{{- if or .Values.azure.existingSecret .Values.azure.connectionString }}true{{ end }}
{{- end }}

{{/*
The environment of one service, PLOTLINE_<SERVICE>_* (services/<name>/config.py).
Takes (list $ "auth").
*/}}
{{- define "plotline.env" -}}
{{- $root := index . 0 }}{{ $name := index . 1 }}
{{- $v := $root.Values }}
{{- $p := printf "PLOTLINE_%s_" (upper $name) }}
- name: HOME
  value: /tmp
- name: NUMBA_CACHE_DIR
  value: /tmp/numba
{{- if $v.nats.existingSecret }}
- name: {{ $p }}NATS_URL
  valueFrom:
    {{- include "plotline.secretRef" (list $root $v.nats "") | trim | nindent 4 }}
{{- else }}
- name: {{ $p }}NATS_URL
  value: {{ $v.nats.url | quote }}
{{- end }}
- name: {{ $p }}NATS_USER
  value: {{ include "plotline.natsUser" $name | quote }}
- name: {{ $p }}NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.nats.credentials.existingSecret | default (include "plotline.secretName" $root) }}
      key: {{ printf "nats-password-%s" $name }}
{{- if ne $name "push" }}
- name: REDIS_URL
  valueFrom:
    {{- include "plotline.secretRef" (list $root $v.redis "redis-url") | trim | nindent 4 }}
- name: {{ $p }}KV_URL
  value: {{ printf "$(REDIS_URL)%sprefix=%splotline:%s:" (ternary "&" "?" (and (not $v.redis.existingSecret) (contains "?" $v.redis.url))) $v.redis.keyPrefix $name | quote }}
- name: {{ $p }}DRAIN_SECONDS
  value: {{ $v.drainSeconds | quote }}
{{- end }}
{{- if has $name (include "plotline.blobServices" $root | fromYamlArray) }}
{{- if include "plotline.hasAzure" $root }}
- name: {{ $p }}BLOB_URL
  value: {{ printf "azure://%s%s" $v.azure.containerPrefix $name | quote }}
- name: {{ $p }}AZURE_CONNECTION_STRING
  valueFrom:
    {{- include "plotline.secretRef" (list $root $v.azure "azure-connection-string") | trim | nindent 4 }}
{{- else }}
- name: {{ $p }}BLOB_URL
  value: file:///var/lib/plotline/blobs
{{- end }}
{{- end }}
- name: {{ $p }}MULTI_USER
  value: {{ $v.multiUser | quote }}
- name: {{ $p }}ISSUER
  value: {{ $v.jwt.issuer | quote }}
- name: {{ $p }}AUDIENCE
  value: {{ $v.jwt.audience | quote }}
{{- $public := include "plotline.publicUrl" $root }}
{{- if and $public (has $name (list "auth" "docs")) }}
- name: {{ $p }}PUBLIC_URL
  value: {{ $public | quote }}
{{- end }}
{{- if eq $name "auth" }}
- name: {{ $p }}COOKIE_SECURE
  value: {{ ternary $v.auth.cookieSecure (eq (include "plotline.tls" $root) "true") (kindIs "bool" $v.auth.cookieSecure) | quote }}
- name: {{ $p }}MAIL_FROM
  value: {{ $v.auth.mailFrom | quote }}
{{- if or $v.auth.smtp.existingSecret $v.auth.smtp.url }}
- name: {{ $p }}SMTP_URL
  valueFrom:
    {{- include "plotline.secretRef" (list $root $v.auth.smtp "smtp-url") | trim | nindent 4 }}
{{- end }}
{{- end }}
{{- if and (has $name (list "auth" "push")) $v.trustedProxies }}
- name: {{ $p }}TRUSTED_PROXIES
  value: {{ toJson $v.trustedProxies | quote }}
{{- end }}
{{- if and (eq $name "push") $v.push.allowedOrigins }}
- name: {{ $p }}ALLOWED_ORIGINS
  value: {{ toJson $v.push.allowedOrigins | quote }}
{{- end }}
{{- with (index $v.services $name).env }}
{{ toYaml . }}
{{- end }}
{{- end }}
