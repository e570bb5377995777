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
# Read LiteLLM's configuration from the ConfigMap a LiteLLMDeployment names (spec.config.configMapKeyRef, one get)
# and watch ConfigMaps so an edit rolls out within seconds; the list and watch ask for metadata only, as for
# Secrets. Read-only: the operator never creates, changes or deletes a ConfigMap.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# Events on LiteLLMDeployments for every Google write and every failure (kube-rs' Recorder writes
# events.k8s.io/v1 only; it patches an existing Event to count repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
A glob of the tenancy values as an anchored regular expression for CEL's matches(): `*` matches anything,
`{project}` becomes PROJECT_ID_HERE (replaced by the deployment's spec.project in CEL).
*/}}
{{- define "litellm-operator.globRegex" -}}
{{- printf "^%s$" (regexQuoteMeta (replace "{project}" "PROJECT_ID_HERE" .) | replace "\\*" ".*") -}}
{{- end }}

{{/*
One ValidatingAdmissionPolicy and its binding for one set of tenancy rules. Validated: creates, and updates that
change the spec or the annotations (the operator's own finalizer and status writes, and deletions, always pass).
*/}}
{{- define "litellm-operator.tenancyAdmission" -}}
{{- $r := .rules }}
{{- $projects := list }}{{- range $r.projects }}{{- $projects = append $projects (include "litellm-operator.globRegex" .) }}{{- end }}
{{- $regions := list }}{{- range $r.regions }}{{- $regions = append $regions (include "litellm-operator.globRegex" .) }}{{- end }}
{{- $accounts := list }}{{- range $r.serviceAccounts }}{{- $accounts = append $accounts (include "litellm-operator.globRegex" .) }}{{- end }}
{{- $external := list }}{{- range $r.externalSecrets }}{{- $p := ternary . (printf "projects/*/secrets/%s" .) (hasPrefix "projects/" .) }}{{- $external = append $external (include "litellm-operator.globRegex" $p) }}{{- end }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {{ .name }}
  labels:
    {{- include "litellm-operator.labels" .root | nindent 4 }}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: ["litellm.dev"]
        apiVersions: ["*"]
        operations: ["CREATE", "UPDATE"]
        resources: ["litellmdeployments"]
  matchConditions:
    - name: spec-or-annotations-changed
      expression: >-
        !has(object.metadata.deletionTimestamp) && (request.operation == 'CREATE' || object.spec != oldObject.spec
        || (has(object.metadata.annotations) ? object.metadata.annotations : {}) !=
        (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}))
  validations:
    - expression: >-
        {{ toJson $projects }}.exists(r, object.spec.project.matches(r))
      message: {{ printf "spec.project is not one of the projects this namespace may use (tenancy policy %s: %s)" .tenant (join ", " $r.projects) | quote }}
      reason: Forbidden
    - expression: >-
        {{ toJson $regions }}.exists(r, object.spec.region.matches(r))
      message: {{ printf "spec.region is not one of the regions this namespace may use (tenancy policy %s: %s)" .tenant (join ", " $r.regions) | quote }}
      reason: Forbidden
    - expression: >-
        {{ toJson $accounts }}.exists(r, object.spec.service.serviceAccount.matches(r.replace('PROJECT_ID_HERE',
        object.spec.project)))
      message: {{ printf "spec.service.serviceAccount is not one of the runtime accounts this namespace may use (tenancy policy %s: %s)" .tenant (join ", " $r.serviceAccounts) | quote }}
      reason: Forbidden
    - expression: >-
        !has(object.spec.secrets) || object.spec.secrets.all(s, !has(s.external) || {{ toJson $external }}.exists(r,
        ('projects/' + object.spec.project + '/secrets/' + (has(s.secretId) ? s.secretId :
        s.env.lowerAscii().replace('_', '-'))).matches(r)))
      message: {{ printf "spec.secrets uses an external secret this namespace may not use (tenancy policy %s: %s)" .tenant (ternary "no external secrets allowed" (join ", " $r.externalSecrets) (empty $r.externalSecrets)) | quote }}
      reason: Forbidden
    {{- if not $r.allowUnauthenticated }}
    - expression: >-
        !has(object.spec.service.allowUnauthenticated) || !object.spec.service.allowUnauthenticated
      message: {{ printf "spec.service.allowUnauthenticated: true is not allowed in this namespace (tenancy policy %s)" .tenant | quote }}
      reason: Forbidden
    {{- end }}
    {{- if not $r.allowAdoption }}
    - expression: >-
        !has(object.metadata.annotations) || !('litellm.dev/adopt' in object.metadata.annotations) ||
        object.metadata.annotations['litellm.dev/adopt'] != 'true'
      message: {{ printf "the annotation litellm.dev/adopt: \"true\" is not allowed in this namespace (tenancy policy %s)" .tenant | quote }}
      reason: Forbidden
    {{- end }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {{ .name }}
  labels:
    {{- include "litellm-operator.labels" .root | nindent 4 }}
spec:
  policyName: {{ .name }}
  validationActions: [Deny]
  {{- if .namespaces }}
  matchResources:
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: {{ .operator }}
          values: {{ toJson .namespaces }}
  {{- end }}
{{- end }}

{{/*
PromQL label matchers that select this release's operator series: metrics.prometheusRule.selector, or the job the
chart's ServiceMonitor scrapes (Prometheus names the job after the Service).
*/}}
{{- define "litellm-operator.metricsSelector" -}}
{{- .Values.metrics.prometheusRule.selector | default (printf "job=%q" (printf "%s-metrics" (include "litellm-operator.fullname" .))) -}}
{{- end }}
