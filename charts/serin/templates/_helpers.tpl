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
{{- if eq .router "service" }}true
{{- else }}{{ (get .Values.routers (.router | replace "-" "_" | camelcase | untitle) | default dict).enabled | default false }}
{{- end }}
{{- end }}

{{/*
The rules for what serin manages in the namespaces it watches: a ClusterRole when it
watches all namespaces, a Role in controller.watchNamespace otherwise. Derived from the
API calls in src/ (see README, "RBAC"); each rule says why.

Server-side apply (PATCH with application/apply-patch+yaml) of an object that does not
exist yet creates it, and the API server then authorizes the request as "create" as
well as "patch": every kind serin applies needs both verbs, or the first apply is a 403.
*/}}
{{- define "serin.workloadRules" -}}
# Canaries: the controller watches them (list/watch), reads one before each reconcile
# (get), writes the ones it materializes from annotations with server-side apply, which
# creates them the first time (create, patch), adds/removes its finalizer (patch), and
# deletes a materialized Canary when its Deployment is no longer annotated (delete).
- apiGroups: ["serin.dev"]
  resources: ["canaries"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
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
# AnalysisTemplates are watched (a check reads its templates from the cache) and one
# the cache lacks yet is read (get).
- apiGroups: ["serin.dev"]
  resources: ["analysistemplates"]
  verbs: ["get", "list", "watch"]
# ReleasePolicies are watched, compiled, and their Valid condition written.
- apiGroups: ["serin.dev"]
  resources: ["releasepolicies"]
  verbs: ["list", "watch"]
# (release policies, continued) each one's Valid condition.
- apiGroups: ["serin.dev"]
  resources: ["releasepolicies/status"]
  verbs: ["patch"]
# Deployments: watched (an annotated Deployment materializes a Canary; a new revision
# starts a release; a change to the "-primary" wakes its Canary; reconciles observe both
# from that watch's cache and read (get) only right after serin's own writes); the
# "-primary" Deployment is created, updated and scaled with server-side apply (create,
# patch), the user's Deployment is scaled with server-side apply and, on hand-back,
# serin's field ownership is released with a JSON patch of metadata.managedFields
# (patch), and the primary is deleted when a Canary is removed (delete).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# A materialized Canary is owned by its Deployment (blockOwnerDeletion), see above.
- apiGroups: ["apps"]
  resources: ["deployments/finalizers"]
  verbs: ["update"]
# ControllerRevisions: the pod template of each promoted revision is stored in one (as
# StatefulSets do), so a deleted primary is recreated at the stable revision: read back
# (get), found by label (list), written with server-side apply (create, patch), and
# old ones and all of them on hand-back removed (delete).
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "create", "patch", "delete"]
# HorizontalPodAutoscalers: the target's HPA is found (list) and read (get), mirrored
# for the primary with server-side apply (create, patch), the mirror watched, metadata
# only with the serin.dev/canary label, so a change wakes its Canary (list, watch), and
# removed on hand-back (delete).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Services: the apex, "-primary" and "-canary" Services are read (get), written with
# server-side apply (create, patch), watched, metadata only with the serin.dev/canary
# label, so a change or deletion wakes their Canary (list, watch), and removed on
# hand-back (delete); the plain-Service router also moves the apex selector this way.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# ConfigMaps referenced by the pods are read (a config change is a release), copied for
# the primary with server-side apply (create, patch), and the copies removed (delete).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "delete"]
# Secrets: the same copies as ConfigMaps (get, create, patch, delete); also read for
# metric-provider credentials, webhook HMAC secrets and notifier URLs named by
# Canaries, templates and Notifiers.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
# Events (events.k8s.io/v1) for every transition: created, and patched when repeated.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.routers.istio.enabled }}
# routers.istio: the VirtualService is read (get: serin only adopts its own or an empty
# one); it and the primary/canary DestinationRules are written with server-side apply
# (create, patch), watched, metadata only with the serin.dev/canary label, so a change
# wakes their Canary (list, watch), and deleted or restored on hand-back (delete). The
# DestinationRules share the rule: get on them reads nothing serin does not write.
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices", "destinationrules"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- if .Values.routers.gatewayApi.enabled }}
# routers.gatewayApi: the HTTPRoute is read (get), its backend weights written with
# server-side apply (create, patch), watched, metadata only with the serin.dev/canary
# label (list, watch), and deleted on hand-back when serin created it (delete).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- if .Values.routers.ingressNginx.enabled }}
# routers.ingressNginx: the application's Ingress is read (get) to copy it into the
# canary Ingress, which is written with server-side apply (create, patch), watched,
# metadata only with the serin.dev/canary label (list, watch), and deleted on
# hand-back (delete).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- if .Values.routers.smi.enabled }}
# routers.smi: the TrafficSplit is read (get), written with server-side apply (create,
# patch), watched, metadata only with the serin.dev/canary label (list, watch), and
# deleted on hand-back (delete).
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/* Rules that only a ClusterRole can grant, needed in every mode. */}}
{{- define "serin.clusterRules" -}}
# ClusterAnalysisTemplates (cluster-scoped) are watched like AnalysisTemplates; one the
# cache lacks yet is read (get).
- apiGroups: ["serin.dev"]
  resources: ["clusteranalysistemplates"]
  verbs: ["get", "list", "watch"]
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
# ClusterReleasePolicies (cluster-scoped) are watched, compiled, and their Valid
# condition written (src/controller/policy_status.rs).
- apiGroups: ["serin.dev"]
  resources: ["clusterreleasepolicies"]
  verbs: ["list", "watch"]
# (cluster release policies, continued) each one's Valid condition.
- apiGroups: ["serin.dev"]
  resources: ["clusterreleasepolicies/status"]
  verbs: ["patch"]
# Namespaces are watched (metadata only) for their labels: a ClusterReleasePolicy's
# namespaceSelector, and sharding.namespaceSelector.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
