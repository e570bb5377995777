{{/* The chart name, overridable. */}}
{{- define "litellm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: used for every object the chart creates. */}}
{{- define "litellm-operator.fullname" -}}
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

{{- define "litellm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them after the first install. */}}
{{- define "litellm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "litellm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "litellm-operator.labels" -}}
helm.sh/chart: {{ include "litellm-operator.chart" . }}
{{ include "litellm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: litellm-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "litellm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "litellm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "litellm-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs wherever it watches LiteLLMDeployments: in a ClusterRole when it watches every
namespace, in a Role per namespace otherwise. Each rule says why.
*/}}
{{- define "litellm-operator.watchRules" -}}
# Watch LiteLLMDeployments (the controller's primary resource) and manage the operator's finalizer on them:
# adding/removing `litellm.dev/cleanup` is a JSON patch of metadata. The operator never writes `spec`, and never
# sends a full update.
- apiGroups: ["litellm.dev"]
  resources: ["litellmdeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Report progress: status is written with server-side apply (a patch) on the status subresource.
- apiGroups: ["litellm.dev"]
  resources: ["litellmdeployments/status"]
  verbs: ["patch"]
# Read the values of the Kubernetes Secrets that LiteLLMDeployments reference (spec.secrets[].fromSecret, one
# get each) and watch them so an edit rolls out within seconds. The list and watch ask for metadata only
# (PartialObjectMetadata), so no other Secret's value reaches the operator. Read-only: the operator never
# creates, changes or deletes a Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Events on LiteLLMDeployments for every Google write and every failure (kube-rs' Recorder writes
# events.k8s.io/v1 only; it patches an existing Event to count repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
