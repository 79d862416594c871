{{/*
Names and labels shared by every template. Kubernetes names and label values are limited to
63 characters, so every name is truncated there (and a trailing "-" trimmed).
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "optimus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, or the release name with the chart name
appended unless the release name already contains it.
*/}}
{{- define "optimus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name derived from the full name plus a suffix, still within 63 characters. */}}
{{- define "optimus.suffixed" -}}
{{- $full := include "optimus.fullname" .root }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{/* chart label: name-version. */}}
{{- define "optimus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "optimus.labels" -}}
helm.sh/chart: {{ include "optimus.chart" . }}
{{ include "optimus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: optimus
{{- end }}

{{/* Selector labels: immutable once a Deployment exists, so only name and instance. */}}
{{- define "optimus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "optimus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "optimus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "optimus.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image, tag defaulting to the appVersion. */}}
{{- define "optimus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Checks of value combinations that would render a broken install; each failure says what to
change. Single values (types, enums such as operator.policy and rbac.scope, unknown keys)
are checked before this by values.schema.json.
*/}}
{{- define "optimus.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.operator.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs operator.watchNamespaces (the namespaces to grant and watch); leave rbac.scope=cluster to watch all namespaces" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (empty .Values.operator.peering) }}
{{- fail "replicaCount > 1 needs operator.peering (kopf peering keeps one replica active); set operator.peering or replicaCount: 1" }}
{{- end }}
{{- end }}
