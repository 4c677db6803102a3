{{/* Chart name, truncated to a DNS label. */}}
{{- define "serin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, unless it already contains the chart name. */}}
{{- define "serin.fullname" -}}
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

{{- define "serin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "serin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "serin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "serin.labels" -}}
helm.sh/chart: {{ include "serin.chart" . }}
{{ include "serin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: serin
{{- end }}

{{- define "serin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "serin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "serin.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "serin.leaseName" -}}
{{- default (printf "%s-leader" (include "serin.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The router values key of each router name the controller accepts. */}}
{{- define "serin.routerEnabled" -}}
{{- $r := .router }}
{{- $v := .Values.routers }}
{{- if eq $r "service" }}true
{{- else if eq $r "istio" }}{{ $v.istio.enabled }}
{{- else if eq $r "gateway-api" }}{{ $v.gatewayApi.enabled }}
{{- else if eq $r "ingress-nginx" }}{{ $v.ingressNginx.enabled }}
{{- else if eq $r "smi" }}{{ $v.smi.enabled }}
{{- else }}false
{{- end }}
{{- end }}

{{/*
The rules for what serin manages in the namespaces it watches: a ClusterRole when it
watches all namespaces, a Role in controller.watchNamespace otherwise. Derived from the
API calls in src/ (see README, "RBAC"); each rule says why.
*/}}
{{- define "serin.workloadRules" -}}
# Canaries: the controller watches them (list/watch), reads one before each reconcile
# (get), creates/updates the ones it materializes from annotations with server-side
# apply and adds/removes its finalizer (patch), and deletes a materialized Canary when
# its Deployment is no longer annotated (delete).
- apiGroups: ["serin.dev"]
  resources: ["canaries"]
  verbs: ["get", "list", "watch", "patch", "delete"]
# Canary status: every transition is written with server-side apply; the approval API
# and Slack buttons write approval records there.
- apiGroups: ["serin.dev"]
  resources: ["canaries/status"]
  verbs: ["patch"]
# Objects serin creates carry an ownerReference to their Canary with
# blockOwnerDeletion; clusters with the OwnerReferencesPermissionEnforcement admission
# plugin (e.g. OpenShift) require update on the owner's finalizers for that.
- apiGroups: ["serin.dev"]
  resources: ["canaries/finalizers"]
  verbs: ["update"]
# AnalysisTemplates named by a Canary are read when a check starts.
- apiGroups: ["serin.dev"]
  resources: ["analysistemplates"]
  verbs: ["get"]
# Deployments: watched (an annotated Deployment materializes a Canary; a new revision
# starts a release), the "-primary" Deployment is created, updated and scaled with
# server-side apply (patch), the user's Deployment is scaled with server-side apply
# (patch), and the primary is deleted when a Canary is removed (delete).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch", "delete"]
# A materialized Canary is owned by its Deployment (blockOwnerDeletion), see above.
- apiGroups: ["apps"]
  resources: ["deployments/finalizers"]
  verbs: ["update"]
# HorizontalPodAutoscalers: the target's HPA is found (list), mirrored for the primary
# with server-side apply (patch) and the mirror removed on hand-back (delete).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "patch", "delete"]
# Services: the apex, "-primary" and "-canary" Services are read, created and updated
# with server-side apply (patch) and removed on hand-back (delete); the plain-Service
# router also moves the apex selector this way.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "patch", "delete"]
# ConfigMaps referenced by the pods are read (a config change is a release), copied for
# the primary with server-side apply (patch), and the copies removed (delete).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "patch", "delete"]
# Secrets: the same copies as ConfigMaps; also read for metric-provider credentials,
# webhook HMAC secrets and notifier URLs named by Canaries, templates and Notifiers.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "patch", "delete"]
# Events (events.k8s.io/v1) for every transition: created, and patched when repeated.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.routers.istio.enabled }}
# routers.istio: the VirtualService is read (serin only adopts its own or an empty one),
# written with server-side apply (patch) and deleted or restored on hand-back.
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch", "delete"]
# routers.istio: the primary/canary DestinationRules are written with server-side apply
# (patch) and deleted on hand-back; serin never reads them back.
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["patch", "delete"]
{{- end }}
{{- if .Values.routers.gatewayApi.enabled }}
# routers.gatewayApi: the HTTPRoute is read, its backend weights written with
# server-side apply (patch), and deleted on hand-back when serin created it.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch", "delete"]
{{- end }}
{{- if .Values.routers.ingressNginx.enabled }}
# routers.ingressNginx: the application's Ingress is read (get) to copy it into the
# canary Ingress, which is written with server-side apply (patch) and deleted on
# hand-back.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "patch", "delete"]
{{- end }}
{{- if .Values.routers.smi.enabled }}
# routers.smi: the TrafficSplit is read, written with server-side apply (patch) and
# deleted on hand-back.
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "patch", "delete"]
{{- end }}
{{- end }}

{{/* Rules that only a ClusterRole can grant, needed in every mode. */}}
{{- define "serin.clusterRules" -}}
# ClusterAnalysisTemplates (cluster-scoped) named by a Canary are read when a check starts.
- apiGroups: ["serin.dev"]
  resources: ["clusteranalysistemplates"]
  verbs: ["get"]
# Notifiers are watched in all namespaces, whatever controller.watchNamespace says
# (src/controller/notifiers.rs), and ClusterNotifiers are cluster-scoped.
- apiGroups: ["serin.dev"]
  resources: ["notifiers", "clusternotifiers"]
  verbs: ["list", "watch"]
# The approval API authenticates callers' bearer tokens (TokenReview) and asks whether
# the caller may do what it asks (SubjectAccessReview), like system:auth-delegator.
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
# (approval API, continued) the SubjectAccessReview for the caller's request.
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- if .Values.sharding.namespaceSelector }}
# sharding.namespaceSelector: the controller lists and watches Namespaces to find the
# ones whose labels match its shard.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
