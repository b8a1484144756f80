{{/* The chart's name. */}}
{{- define "keycap.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name: the release name, or <release>-keycap. */}}
{{- define "keycap.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "keycap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "keycap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component: include "keycap.selectorLabels" (list $ "authz"). */}}
{{- define "keycap.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "keycap.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of a component's objects. */}}
{{- define "keycap.componentLabels" -}}
{{ include "keycap.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The ServiceAccount of a component: include "keycap.serviceAccountName" (list $ "authz"). */}}
{{- define "keycap.serviceAccountName" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- $sa := (index $root.Values $c).serviceAccount -}}
{{- if $sa.create -}}
{{- default (printf "%s-%s" (include "keycap.fullname" $root) $c) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* The username a component's ServiceAccount authenticates as. */}}
{{- define "keycap.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" (index . 0).Release.Namespace (include "keycap.serviceAccountName" .) -}}
{{- end -}}

{{/* The image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "keycap.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The webhook's Service (the serving certificate names it). */}}
{{- define "keycap.webhookService" -}}
{{- printf "%s-webhook" (include "keycap.fullname" .) -}}
{{- end -}}

{{/* The ValidatingWebhookConfiguration. */}}
{{- define "keycap.webhookConfiguration" -}}
{{- printf "%s-validating-webhook" (include "keycap.fullname" .) -}}
{{- end -}}

{{/* The cert-manager Certificate of the webhook, and its Secret. */}}
{{- define "keycap.webhookCertificate" -}}
{{- printf "%s-webhook-cert" (include "keycap.fullname" .) -}}
{{- end -}}

{{/* The plural resource names of keycap's kinds, read from the CRDs the chart ships. */}}
{{- define "keycap.resources" -}}
{{- $out := list -}}
{{- range $path, $_ := .Files.Glob "files/crds/*.yaml" -}}
{{- $crd := $.Files.Get $path | fromYaml -}}
{{- $out = append $out $crd.spec.names.plural -}}
{{- end -}}
{{- toJson (sortAlpha $out) -}}
{{- end -}}

{{/*
The Deployment of a component: include "keycap.deployment" (dict "root" $ "component" "authz"
"args" (list ...) "ports" (list ...) "replicas" n).
*/}}
{{- define "keycap.deployment" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := index $root.Values $c -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "keycap.fullname" $root }}-{{ $c }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "keycap.componentLabels" (list $root $c) | nindent 4 }}
spec:
  {{- if not .omitReplicas }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "keycap.selectorLabels" (list $root $c) | nindent 6 }}
  {{- with $v.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "keycap.selectorLabels" (list $root $c) | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "keycap.serviceAccountName" (list $root $c) }}
      {{- with (default $root.Values.global.priorityClassName $v.priorityClassName) }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .hostNetwork }}
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      containers:
      - name: {{ $c }}
        image: {{ include "keycap.image" $root }}
        imagePullPolicy: {{ $root.Values.image.pullPolicy }}
        args:
        {{- range .args }}
        - {{ . | quote }}
        {{- end }}
        {{- range $v.extraArgs }}
        - {{ . | quote }}
        {{- end }}
        env:
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        ports:
        {{- range .ports }}
        - name: {{ .name }}
          containerPort: {{ .port }}
          protocol: TCP
        {{- end }}
        {{- if $root.Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ $root.Values.metrics.port }}
          protocol: TCP
        {{- end }}
        - name: probes
          containerPort: 8081
          protocol: TCP
        livenessProbe:
          httpGet:
            path: /healthz
            port: probes
          initialDelaySeconds: 15
          periodSeconds: 20
        readinessProbe:
          httpGet:
            path: /readyz
            port: probes
          initialDelaySeconds: 5
          periodSeconds: 5
        {{- with $v.containerSecurityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $v.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .volumeMounts }}
        volumeMounts:
          {{- toYaml . | nindent 10 }}
        {{- end }}
      {{- with .volumes }}
      volumes:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.topologySpreadConstraints }}
      topologySpreadConstraints:
      {{- range $v.topologySpreadConstraints }}
      - {{- toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" (include "keycap.selectorLabels" (list $root $c) | fromYaml)))) | nindent 8 }}
      {{- end }}
      {{- end }}
      terminationGracePeriodSeconds: 10
{{- end -}}

{{/* The flags every component shares. */}}
{{- define "keycap.commonArgs" -}}
{{- $args := list "--health-probe-bind-address=:8081" -}}
{{- if .Values.metrics.enabled -}}
{{- $args = append $args (printf "--metrics-bind-address=:%v" .Values.metrics.port) -}}
{{- $args = append $args (printf "--metrics-secure=%t" .Values.metrics.secure) -}}
{{- else -}}
{{- $args = append $args "--metrics-bind-address=0" -}}
{{- end -}}
{{- with .Values.issuer -}}
{{- $args = append $args (printf "--issuer=%s" .) -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}
