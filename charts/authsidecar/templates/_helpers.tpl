{{/*
Every helper here takes one context: a dict with
  "values": this chart's values (.Values here; .Values.authsidecar in a
            parent chart that depends on this one)
  "root":   the top-level template context ($), for .Release and .Capabilities
so that other charts can include "authsidecar.container" and
"authsidecar.volumes" in their own pod specs and get the same names as the
objects this chart renders.
*/}}

{{- define "authsidecar.name" -}}
{{- default "authsidecar" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "authsidecar.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "authsidecar.name" . -}}
{{- if contains $name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "authsidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authsidecar.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "authsidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "authsidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* The pods the monitors and the metrics Service select. */}}
{{- define "authsidecar.monitorSelectorLabels" -}}
{{- if .values.monitoring.selectorLabels -}}
{{- toYaml .values.monitoring.selectorLabels -}}
{{- else -}}
{{- include "authsidecar.selectorLabels" . -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the Prometheus Operator's objects may be rendered: the cluster
serves monitoring.coreos.com/v1 (helm install and upgrade ask it; helm
template needs --api-versions monitoring.coreos.com/v1), or
monitoring.trustCRDsExist says to render them anyway.
*/}}
{{- define "authsidecar.prometheusOperator" -}}
{{- if or .values.monitoring.trustCRDsExist (.root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}true{{- end -}}
{{- end -}}

{{/* PromQL label matchers in braces, from a list whose empty items are dropped; "" for none. */}}
{{- define "authsidecar.promSel" -}}
{{- $m := without . "" -}}
{{- if $m -}}{{ printf "{%s}" (join ", " $m) }}{{- end -}}
{{- end -}}

{{/* An alert's for, severity and the common labels: (list <alert values> <prometheusRule values>). */}}
{{- define "authsidecar.alertCommon" -}}
{{- $alert := index . 0 -}}
{{- $rule := index . 1 -}}
{{- with $alert.for }}
for: {{ . }}
{{- end }}
labels:
  severity: {{ $alert.severity }}
  {{- with $rule.alertLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- define "authsidecar.serviceAccountName" -}}
{{- if .values.serviceAccount.create -}}
{{- default (include "authsidecar.fullname" .) .values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The authsidecar version this chart ships, the default image tag. It is
written here, not read from .Chart.AppVersion: when a parent chart includes
"authsidecar.container", .root.Chart is the parent's, whose appVersion is the
parent's own (a 1.0.0 parent would pull authsidecar:1.0.0, which does not
exist). Keep it equal to appVersion in Chart.yaml; the chart tests check.
*/}}
{{- define "authsidecar.appVersion" -}}
0.1.0
{{- end -}}

{{- define "authsidecar.image" -}}
{{- $img := .values.sidecar.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default (include "authsidecar.appVersion" .) $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* "true" when inbound is on, "" otherwise. */}}
{{- define "authsidecar.inboundEnabled" -}}
{{- if .values.inbound.issuers -}}true{{- end -}}
{{- end -}}

{{/* "true" when outbound is on, "" otherwise. */}}
{{- define "authsidecar.outboundEnabled" -}}
{{- if .values.outbound.routes -}}true{{- end -}}
{{- end -}}

{{/* The Secret this chart makes for inline secrets ("" when none). */}}
{{- define "authsidecar.secretName" -}}
{{- if or .values.outbound.clientSecret .values.inbound.introspection.clientSecret -}}
{{- include "authsidecar.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Where the client secret comes from: "name key", or "" for none. */}}
{{- define "authsidecar.clientSecretRef" -}}
{{- $o := .values.outbound -}}
{{- if $o.existingSecret -}}
{{- printf "%s %s" $o.existingSecret $o.existingSecretKey -}}
{{- else if $o.clientSecret -}}
{{- printf "%s client-secret" (include "authsidecar.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "authsidecar.introspectionSecretRef" -}}
{{- $i := .values.inbound.introspection -}}
{{- if $i.existingSecret -}}
{{- printf "%s %s" $i.existingSecret $i.existingSecretKey -}}
{{- else if $i.clientSecret -}}
{{- printf "%s introspection-client-secret" (include "authsidecar.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The rules ConfigMap: "name key", or "" for none. */}}
{{- define "authsidecar.rulesRef" -}}
{{- $i := .values.inbound -}}
{{- if $i.existingRulesConfigMap -}}
{{- printf "%s %s" $i.existingRulesConfigMap $i.rulesConfigMapKey -}}
{{- else if $i.rules -}}
{{- printf "%s-rules rules.yaml" (include "authsidecar.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the sidecar uses the certificate the cert-manager CSI driver
issues for the pod (certManagerCsi): mounted once, at /etc/authsidecar/pod-tls.
*/}}
{{- define "authsidecar.csiUsed" -}}
{{- $v := .values -}}
{{- $in := and (include "authsidecar.inboundEnabled" .) $v.inbound.tls.enabled (or $v.inbound.tls.csi (and $v.inbound.tls.clientCA.enabled $v.inbound.tls.clientCA.csi)) -}}
{{- $out := and (include "authsidecar.outboundEnabled" .) (or $v.outbound.tls.ca.csi $v.outbound.tls.clientCertCsi) -}}
{{- if or $in $out -}}true{{- end -}}
{{- end -}}

{{/* Stops rendering with a clear message on settings that cannot work. */}}
{{- define "authsidecar.validate" -}}
{{- $v := .values -}}
{{- if and $v.sidecar.native (semverCompare "<1.29.0-0" .root.Capabilities.KubeVersion.Version) -}}
{{- fail (printf "authsidecar: sidecar.native=true needs Kubernetes 1.29 or later (native sidecars), this cluster is %s: set sidecar.native=false" .root.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if and $v.inbound.issuers (not $v.inbound.audiences) -}}
{{- fail "authsidecar: inbound.audiences is required when inbound.issuers is set (AUTHSIDECAR_INBOUND_AUDIENCES)" -}}
{{- end -}}
{{- if and $v.inbound.jwksUrl (gt (len $v.inbound.issuers) 1) -}}
{{- fail "authsidecar: inbound.jwksUrl works with one issuer only" -}}
{{- end -}}
{{- $tls := $v.inbound.tls -}}
{{- if and $tls.enabled (not (or $tls.secretName $tls.csi)) -}}
{{- fail "authsidecar: inbound.tls.secretName (or inbound.tls.csi) is required when inbound.tls.enabled is true" -}}
{{- end -}}
{{- if and $tls.secretName $tls.csi -}}
{{- fail "authsidecar: set inbound.tls.secretName or inbound.tls.csi, not both" -}}
{{- end -}}
{{- if gt (len (compact (list $tls.clientCA.secretName $tls.clientCA.configMap (ternary "csi" "" (eq $tls.clientCA.csi true))))) 1 -}}
{{- fail "authsidecar: set one of inbound.tls.clientCA.secretName, .configMap and .csi" -}}
{{- end -}}
{{- if gt (len (compact (list $v.outbound.tls.ca.configMap $v.outbound.tls.ca.secret (ternary "csi" "" (eq $v.outbound.tls.ca.csi true))))) 1 -}}
{{- fail "authsidecar: set one of outbound.tls.ca.configMap, .secret and .csi" -}}
{{- end -}}
{{- if and $v.outbound.tls.clientCertSecret $v.outbound.tls.clientCertCsi -}}
{{- fail "authsidecar: set outbound.tls.clientCertSecret or outbound.tls.clientCertCsi, not both" -}}
{{- end -}}
{{- if and (include "authsidecar.csiUsed" .) (not $v.certManagerCsi.issuerName) -}}
{{- fail "authsidecar: certManagerCsi.issuerName is required when a certificate or CA comes from the cert-manager CSI driver (inbound.tls.csi, inbound.tls.clientCA.csi, outbound.tls.ca.csi, outbound.tls.clientCertCsi)" -}}
{{- end -}}
{{- if and $v.inbound.tls.clientCA.enabled (not $v.inbound.tls.enabled) -}}
{{- fail "authsidecar: inbound.tls.clientCA.enabled (mTLS) needs inbound.tls.enabled" -}}
{{- end -}}
{{- if and $tls.clientCA.enabled (not (or $tls.clientCA.secretName $tls.clientCA.configMap $tls.clientCA.csi $tls.secretName)) -}}
{{- fail "authsidecar: inbound.tls.clientCA needs a CA bundle: set its secretName, configMap (a trust-manager Bundle) or csi" -}}
{{- end -}}
{{- if and (eq $v.inbound.introspection.authMethod "none") (or $v.inbound.introspection.clientSecret $v.inbound.introspection.existingSecret) -}}
{{- fail "authsidecar: inbound.introspection.authMethod=none sends no client credentials: unset inbound.introspection.clientSecret and existingSecret" -}}
{{- end -}}
{{- if and $v.inbound.introspection.clientSecret $v.inbound.introspection.existingSecret -}}
{{- fail "authsidecar: set inbound.introspection.clientSecret or inbound.introspection.existingSecret, not both" -}}
{{- end -}}
{{- if and $v.inbound.rules $v.inbound.existingRulesConfigMap -}}
{{- fail "authsidecar: set inbound.rules or inbound.existingRulesConfigMap, not both" -}}
{{- end -}}
{{- if $v.outbound.routes -}}
{{- if not $v.outbound.clientId -}}
{{- fail "authsidecar: outbound.clientId is required when outbound.routes is set (AUTHSIDECAR_OUTBOUND_CLIENT_ID)" -}}
{{- end -}}
{{- if not (or $v.outbound.issuer $v.outbound.tokenUrl) -}}
{{- fail "authsidecar: outbound.issuer or outbound.tokenUrl is required when outbound.routes is set" -}}
{{- end -}}
{{- if and $v.outbound.issuer $v.outbound.tokenUrl -}}
{{- fail "authsidecar: set outbound.issuer or outbound.tokenUrl, not both" -}}
{{- end -}}
{{- range $name, $r := $v.outbound.routes -}}
{{- if not $r.url -}}
{{- fail (printf "authsidecar: outbound.routes.%s.url is required (AUTHSIDECAR_ROUTE_%s_URL)" $name ($name | upper | replace "-" "_")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.outbound.clientSecret $v.outbound.existingSecret -}}
{{- fail "authsidecar: set outbound.clientSecret or outbound.existingSecret, not both" -}}
{{- end -}}
{{- if and $v.outbound.clientAssertion.enabled (not $v.outbound.clientAssertion.audience) -}}
{{- fail "authsidecar: outbound.clientAssertion.audience is required when outbound.clientAssertion.enabled is true" -}}
{{- end -}}
{{- if and (ne $v.outbound.listenHost "127.0.0.1") (ne $v.outbound.listenHost "localhost") (ne $v.outbound.listenHost "::1") (ne $v.outbound.listenHost "[::1]") (not $v.outbound.allowRemote) -}}
{{- fail (printf "authsidecar: outbound.listenHost %q is not loopback: set outbound.allowRemote=true to accept that anyone reaching it acts as this service" $v.outbound.listenHost) -}}
{{- end -}}
{{- if and $v.monitoring.serviceMonitor.enabled $v.monitoring.podMonitor.enabled -}}
{{- fail "authsidecar: enable monitoring.serviceMonitor or monitoring.podMonitor, not both (each target would be scraped twice)" -}}
{{- end -}}
{{- end -}}

{{/* One env entry; nothing when the value is empty or null. */}}
{{- define "authsidecar.env" -}}
{{- $name := index . 0 -}}
{{- $value := index . 1 -}}
{{- if not (kindIs "invalid" $value) -}}
{{- if kindIs "slice" $value -}}
{{- $value = join "," $value -}}
{{- end -}}
{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The sidecar's environment. Secrets are only ever files: the chart sets the
*_FILE variables and mounts the Secrets; it never sets a secret's value.
*/}}
{{- define "authsidecar.envVars" -}}
{{- include "authsidecar.envVars.untrimmed" . | trim -}}
{{- end -}}

{{- define "authsidecar.envVars.untrimmed" -}}
{{- $v := .values -}}
{{- $s := $v.sidecar -}}
{{- $in := $v.inbound -}}
{{- $out := $v.outbound -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_ADMIN_LISTEN" (printf ":%d" (int $s.ports.admin))) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_LOG_LEVEL" $s.logLevel) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_LOG_FORMAT" $s.logFormat) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_ACCESS_LOG" $s.accessLog) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_SHUTDOWN_DELAY" $s.shutdownDelay) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_SHUTDOWN_GRACE" $s.shutdownGrace) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_BODY_IDLE_TIMEOUT" $s.bodyIdleTimeout) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_ALLOW_INSECURE_HTTP" $s.allowInsecureHttp) -}}
{{- if include "authsidecar.inboundEnabled" . -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_LISTEN" (printf ":%d" (int $s.ports.inbound))) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_UPSTREAM" (default (printf "http://127.0.0.1:%d" (int $v.app.port)) $in.upstream)) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_UPSTREAM_TIMEOUT" $in.upstreamTimeout) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_UPSTREAM_PROTOCOL" $in.upstreamProtocol) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_ISSUERS" $in.issuers) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_JWKS_URL" $in.jwksUrl) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_AUDIENCES" $in.audiences) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_ALGORITHMS" $in.algorithms) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_CLOCK_SKEW" $in.clockSkew) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_REQUIRED_SCOPES" $in.requiredScopes) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_ALLOWED_CLIENTS" $in.allowedClients) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_PUBLIC_PATHS" $in.publicPaths) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_FORWARD_TOKEN" $in.forwardToken) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_REQUIRE_AT_JWT" $in.requireAtJwt) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_ALLOW_ENCODED_SLASHES" $in.allowEncodedSlashes) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_CASE_INSENSITIVE_PATHS" $in.caseInsensitivePaths) -}}
{{- if include "authsidecar.rulesRef" . -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_RULES_FILE" "/etc/authsidecar/rules/rules.yaml") -}}
{{- end -}}
{{- if $in.tls.enabled -}}
{{- $dir := ternary "/etc/authsidecar/pod-tls" "/etc/authsidecar/inbound-tls" (eq $in.tls.csi true) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_TLS_CERT_FILE" (print $dir "/tls.crt")) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_TLS_KEY_FILE" (print $dir "/tls.key")) -}}
{{- end -}}
{{- if $in.tls.clientCA.enabled -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_CLIENT_CA_FILE" (ternary "/etc/authsidecar/pod-tls/ca.crt" "/etc/authsidecar/client-ca/ca.crt" (eq $in.tls.clientCA.csi true))) -}}
{{- end -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID" $in.introspection.clientId) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_INTROSPECTION_AUTH_METHOD" $in.introspection.authMethod) -}}
{{- if include "authsidecar.introspectionSecretRef" . -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET_FILE" "/etc/authsidecar/introspection/client-secret") -}}
{{- end -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_INTROSPECTION_URL" $in.introspection.url) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_INTROSPECT" $in.introspection.mode) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_INBOUND_INTROSPECTION_CACHE_TTL" $in.introspection.cacheTTL) -}}
{{- end -}}
{{- if include "authsidecar.outboundEnabled" . -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_LISTEN" (printf "%s:%d" $out.listenHost (int $s.ports.outbound))) -}}
{{- if $out.allowRemote -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_ALLOW_REMOTE" "true") -}}
{{- end -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_ROUTES" (keys $out.routes | sortAlpha)) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_ISSUER" $out.issuer) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_TOKEN_URL" $out.tokenUrl) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_CLIENT_ID" $out.clientId) -}}
{{- if include "authsidecar.clientSecretRef" . -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE" "/etc/authsidecar/client-secret/client-secret") -}}
{{- end -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_AUTH_METHOD" $out.authMethod) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_READY_REQUIRES_TOKENS" $out.readyRequiresTokens) -}}
{{- if $out.privateKey.existingSecret -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE" "/etc/authsidecar/private-key/private-key.pem") -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_ID" $out.privateKey.keyId) -}}
{{- end -}}
{{- if $out.clientAssertion.enabled -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE" "/var/run/secrets/authsidecar/client-assertion/token") -}}
{{- end -}}
{{- if or $out.tls.ca.configMap $out.tls.ca.secret -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_TLS_CA_FILE" "/etc/authsidecar/outbound-ca/ca.crt") -}}
{{- else if $out.tls.ca.csi -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_TLS_CA_FILE" "/etc/authsidecar/pod-tls/ca.crt") -}}
{{- end -}}
{{- if or $out.tls.clientCertSecret $out.tls.clientCertCsi -}}
{{- $dir := ternary "/etc/authsidecar/pod-tls" "/etc/authsidecar/outbound-tls" (eq $out.tls.clientCertCsi true) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE" (print $dir "/tls.crt")) -}}
{{- include "authsidecar.env" (list "AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE" (print $dir "/tls.key")) -}}
{{- end -}}
{{- range $name := keys $out.routes | sortAlpha -}}
{{- $r := get $out.routes $name -}}
{{- $p := printf "AUTHSIDECAR_ROUTE_%s_" ($name | upper | replace "-" "_") -}}
{{- include "authsidecar.env" (list (print $p "URL") $r.url) -}}
{{- include "authsidecar.env" (list (print $p "AUDIENCE") $r.audience) -}}
{{- include "authsidecar.env" (list (print $p "RESOURCE") $r.resource) -}}
{{- include "authsidecar.env" (list (print $p "SCOPES") (join " " (default (list) $r.scopes))) -}}
{{- include "authsidecar.env" (list (print $p "LISTEN") $r.listen) -}}
{{- include "authsidecar.env" (list (print $p "TIMEOUT") $r.timeout) -}}
{{- include "authsidecar.env" (list (print $p "PROTOCOL") $r.protocol) -}}
{{- end -}}
{{- end -}}
{{- with $v.tracing -}}
{{- include "authsidecar.env" (list "OTEL_TRACES_EXPORTER" .exporter) -}}
{{- include "authsidecar.env" (list "OTEL_EXPORTER_OTLP_ENDPOINT" .endpoint) -}}
{{- include "authsidecar.env" (list "OTEL_EXPORTER_OTLP_PROTOCOL" .protocol) -}}
{{- include "authsidecar.env" (list "OTEL_SERVICE_NAME" .serviceName) -}}
{{- include "authsidecar.env" (list "OTEL_TRACES_SAMPLER" .sampler) -}}
{{- include "authsidecar.env" (list "OTEL_TRACES_SAMPLER_ARG" .samplerArg) -}}
{{- include "authsidecar.env" (list "OTEL_PROPAGATORS" .propagators) -}}
{{- $attrs := list -}}
{{- range $k := keys (default (dict) .resourceAttributes) | sortAlpha -}}
{{- $attrs = append $attrs (printf "%s=%s" $k (get $.values.tracing.resourceAttributes $k)) -}}
{{- end -}}
{{- include "authsidecar.env" (list "OTEL_RESOURCE_ATTRIBUTES" $attrs) -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's volume mounts, one per file source. */}}
{{- define "authsidecar.volumeMounts" -}}
{{- include "authsidecar.volumeMounts.untrimmed" . | trim -}}
{{- end -}}

{{- define "authsidecar.volumeMounts.untrimmed" -}}
{{- $v := .values -}}
{{- if include "authsidecar.inboundEnabled" . -}}
{{- if include "authsidecar.rulesRef" . }}
- name: authsidecar-rules
  mountPath: /etc/authsidecar/rules
  readOnly: true
{{- end -}}
{{- if $v.inbound.tls.secretName }}
- name: authsidecar-inbound-tls
  mountPath: /etc/authsidecar/inbound-tls
  readOnly: true
{{- end -}}
{{- if and $v.inbound.tls.clientCA.enabled (not $v.inbound.tls.clientCA.csi) }}
- name: authsidecar-client-ca
  mountPath: /etc/authsidecar/client-ca
  readOnly: true
{{- end -}}
{{- if include "authsidecar.introspectionSecretRef" . }}
- name: authsidecar-introspection-secret
  mountPath: /etc/authsidecar/introspection
  readOnly: true
{{- end -}}
{{- end -}}
{{- if include "authsidecar.outboundEnabled" . -}}
{{- if include "authsidecar.clientSecretRef" . }}
- name: authsidecar-client-secret
  mountPath: /etc/authsidecar/client-secret
  readOnly: true
{{- end -}}
{{- if $v.outbound.privateKey.existingSecret }}
- name: authsidecar-private-key
  mountPath: /etc/authsidecar/private-key
  readOnly: true
{{- end -}}
{{- if $v.outbound.clientAssertion.enabled }}
- name: authsidecar-client-assertion
  mountPath: /var/run/secrets/authsidecar/client-assertion
  readOnly: true
{{- end -}}
{{- if or $v.outbound.tls.ca.configMap $v.outbound.tls.ca.secret }}
- name: authsidecar-outbound-ca
  mountPath: /etc/authsidecar/outbound-ca
  readOnly: true
{{- end -}}
{{- if $v.outbound.tls.clientCertSecret }}
- name: authsidecar-outbound-tls
  mountPath: /etc/authsidecar/outbound-tls
  readOnly: true
{{- end -}}
{{- end -}}
{{- if include "authsidecar.csiUsed" . }}
- name: authsidecar-pod-tls
  mountPath: /etc/authsidecar/pod-tls
  readOnly: true
{{- end -}}
{{- with $v.sidecar.extraVolumeMounts }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/*
The pod volumes the sidecar mounts, as list items (possibly none). Include it
under the pod's `volumes:`. Whole directories, never subPath, so that the
kubelet's updates (a rotated secret or certificate) reach the sidecar.
*/}}
{{- define "authsidecar.volumes" -}}
{{- include "authsidecar.volumes.untrimmed" . | trim -}}
{{- end -}}

{{- define "authsidecar.volumes.untrimmed" -}}
{{- $v := .values -}}
{{- if include "authsidecar.inboundEnabled" . -}}
{{- with include "authsidecar.rulesRef" . }}
{{- $ref := splitList " " . }}
- name: authsidecar-rules
  configMap:
    name: {{ index $ref 0 }}
    items:
      - key: {{ index $ref 1 }}
        path: rules.yaml
{{- end -}}
{{- if $v.inbound.tls.secretName }}
- name: authsidecar-inbound-tls
  secret:
    secretName: {{ $v.inbound.tls.secretName }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end -}}
{{- $ca := $v.inbound.tls.clientCA -}}
{{- if and $ca.enabled $ca.configMap }}
- name: authsidecar-client-ca
  configMap:
    name: {{ $ca.configMap }}
    items:
      - key: {{ $ca.key }}
        path: ca.crt
{{- else if and $ca.enabled (not $ca.csi) }}
- name: authsidecar-client-ca
  secret:
    secretName: {{ default $v.inbound.tls.secretName $ca.secretName }}
    items:
      - key: {{ $ca.key }}
        path: ca.crt
{{- end -}}
{{- with include "authsidecar.introspectionSecretRef" . }}
{{- $ref := splitList " " . }}
- name: authsidecar-introspection-secret
  secret:
    secretName: {{ index $ref 0 }}
    items:
      - key: {{ index $ref 1 }}
        path: client-secret
{{- end -}}
{{- end -}}
{{- if include "authsidecar.outboundEnabled" . -}}
{{- with include "authsidecar.clientSecretRef" . }}
{{- $ref := splitList " " . }}
- name: authsidecar-client-secret
  secret:
    secretName: {{ index $ref 0 }}
    items:
      - key: {{ index $ref 1 }}
        path: client-secret
{{- end -}}
{{- if $v.outbound.privateKey.existingSecret }}
- name: authsidecar-private-key
  secret:
    secretName: {{ $v.outbound.privateKey.existingSecret }}
    items:
      - key: {{ $v.outbound.privateKey.key }}
        path: private-key.pem
{{- end -}}
{{- if $v.outbound.clientAssertion.enabled }}
- name: authsidecar-client-assertion
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ $v.outbound.clientAssertion.audience | quote }}
          expirationSeconds: {{ int $v.outbound.clientAssertion.expirationSeconds }}
          path: token
{{- end -}}
{{- if $v.outbound.tls.ca.configMap }}
- name: authsidecar-outbound-ca
  configMap:
    name: {{ $v.outbound.tls.ca.configMap }}
    items:
      - key: {{ $v.outbound.tls.ca.key }}
        path: ca.crt
{{- else if $v.outbound.tls.ca.secret }}
- name: authsidecar-outbound-ca
  secret:
    secretName: {{ $v.outbound.tls.ca.secret }}
    items:
      - key: {{ $v.outbound.tls.ca.key }}
        path: ca.crt
{{- end -}}
{{- if $v.outbound.tls.clientCertSecret }}
- name: authsidecar-outbound-tls
  secret:
    secretName: {{ $v.outbound.tls.clientCertSecret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end -}}
{{- end -}}
{{- if include "authsidecar.csiUsed" . }}
{{- $c := $v.certManagerCsi }}
{{- $attrs := dict
  "csi.cert-manager.io/issuer-name" $c.issuerName
  "csi.cert-manager.io/issuer-kind" $c.issuerKind
  "csi.cert-manager.io/issuer-group" $c.issuerGroup
  "csi.cert-manager.io/common-name" $c.commonName
  "csi.cert-manager.io/dns-names" (join "," $c.dnsNames)
  "csi.cert-manager.io/uri-sans" (join "," $c.uriSans)
  "csi.cert-manager.io/ip-sans" (join "," $c.ipSans)
  "csi.cert-manager.io/duration" $c.duration
  "csi.cert-manager.io/renew-before" $c.renewBefore
  "csi.cert-manager.io/key-usages" (join "," $c.keyUsages)
  "csi.cert-manager.io/key-algorithm" $c.keyAlgorithm
  "csi.cert-manager.io/fs-group" (toString (int (default 65532 $v.sidecar.securityContext.runAsGroup)))
}}
{{- $attrs = merge (deepCopy (default (dict) $c.extraAttributes)) $attrs }}
# A certificate the cert-manager CSI driver issues for this pod and renews
# in place; the key never leaves the node. fs-group lets the non-root
# sidecar read the key.
- name: authsidecar-pod-tls
  csi:
    driver: csi.cert-manager.io
    readOnly: true
    volumeAttributes:
      {{- range $k := keys $attrs | sortAlpha }}
      {{- with get $attrs $k }}
      {{ $k }}: {{ . | quote }}
      {{- end }}
      {{- end }}
{{- end -}}
{{- end -}}

{{/*
A Go duration ("1m30s", "500ms") as seconds, a float; "" is 0. The schema
allows only what time.ParseDuration reads.
*/}}
{{- define "authsidecar.durationSeconds" -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $total = addf $total (mulf (float64 $num) (get $units (trimPrefix $num .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* Seconds the sidecar may take after SIGTERM: shutdownDelay + shutdownGrace. */}}
{{- define "authsidecar.shutdownSeconds" -}}
{{- $s := .values.sidecar -}}
{{- addf (include "authsidecar.durationSeconds" $s.shutdownDelay | float64) (include "authsidecar.durationSeconds" (default "15s" $s.shutdownGrace) | float64) -}}
{{- end -}}

{{/*
The pod's terminationGracePeriodSeconds: values.terminationGracePeriodSeconds
when set (the render fails if it is shorter than the sidecar's delay plus
grace), else the larger of 30 and delay + grace + 5 s.
*/}}
{{- define "authsidecar.terminationGracePeriodSeconds" -}}
{{- $need := include "authsidecar.shutdownSeconds" . | float64 -}}
{{- $set := .values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- max 30 (int (ceil (addf $need 5))) -}}
{{- else if lt (float64 $set) $need -}}
{{- fail (printf "authsidecar: terminationGracePeriodSeconds %d is shorter than sidecar.shutdownDelay + sidecar.shutdownGrace (%ss): the sidecar would be killed before it drains; raise it, or leave it null to have it computed" (int $set) (toString $need)) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/*
A NetworkPolicy that lets connections in on the sidecar's inbound and admin
ports only, so that nothing outside the pod reaches the app around the
sidecar. Nothing when values.networkPolicy.enabled is false. The chart's
own Deployment uses it; a parent chart includes it for its own pods, with
the pods' labels and a name:

  {{- include "authsidecar.networkPolicy" (dict "values" .Values.authsidecar "root" $
        "name" (printf "%s-shop-api" .Release.Name) "podSelector" (dict "app" "shop-api")) }}

"podSelector" defaults to values.monitoring.selectorLabels, then to this
chart's pods; "name" to the chart's full name.
*/}}
{{- define "authsidecar.networkPolicy" -}}
{{- $v := .values -}}
{{- if $v.networkPolicy.enabled -}}
{{- $np := $v.networkPolicy -}}
# Only the sidecar's ports accept connections: the app's own port is closed
# to everything outside the pod, so no request skips token validation.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ default (include "authsidecar.fullname" .) .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "authsidecar.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- if .podSelector }}
      {{- toYaml .podSelector | nindent 6 }}
      {{- else }}
      {{- include "authsidecar.monitorSelectorLabels" . | nindent 6 }}
      {{- end }}
  policyTypes:
    - Ingress
  ingress:
    {{- if include "authsidecar.inboundEnabled" . }}
    - ports:
        - port: {{ int $v.sidecar.ports.inbound }}
          protocol: TCP
      {{- with $np.from }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    - ports:
        - port: {{ int $v.sidecar.ports.admin }}
          protocol: TCP
      {{- with $np.adminFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- with $np.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}

{{- define "authsidecar.probe" -}}
{{- $p := index . 0 -}}
{{- $opts := index . 1 -}}
{{- $port := index . 2 -}}
httpGet:
  path: {{ $p }}
  port: {{ $port }}
  scheme: HTTP
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "successThreshold" "failureThreshold" }}
{{- if hasKey $opts $k }}
{{ $k }}: {{ int (get $opts $k) }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The sidecar container, as one list item. Include it under `initContainers:`
when values.sidecar.native is true (it then carries restartPolicy: Always),
under `containers:` otherwise:

  initContainers:
    {{- include "authsidecar.container" (dict "values" .Values.authsidecar "root" $) | nindent 4 }}

What the including pod must set itself:
  - terminationGracePeriodSeconds, at least sidecar.shutdownDelay (5s) +
    sidecar.shutdownGrace (15s): after SIGTERM the sidecar keeps serving for
    the delay, then drains. "authsidecar.terminationGracePeriodSeconds"
    computes it as the chart's own Deployment does:
      terminationGracePeriodSeconds: {{ include "authsidecar.terminationGracePeriodSeconds" $sidecar }}
    With a native sidecar, Kubernetes stops the app first and sends SIGTERM
    to the sidecar only once every app container has exited, so the period
    must also cover the app's own preStop and drain.
  - the pod's volumes: {{- include "authsidecar.volumes" $sidecar | nindent 8 }}
  - a Service whose targetPort is sidecar.ports.inbound, never the app's.
*/}}
{{- define "authsidecar.container" -}}
{{- include "authsidecar.validate" . -}}
{{- $v := .values -}}
{{- $s := $v.sidecar -}}
- name: {{ $s.name }}
  image: {{ include "authsidecar.image" . | quote }}
  imagePullPolicy: {{ $s.image.pullPolicy }}
  {{- if $s.native }}
  restartPolicy: Always
  {{- end }}
  ports:
    {{- if include "authsidecar.inboundEnabled" . }}
    - name: auth-inbound
      containerPort: {{ int $s.ports.inbound }}
      protocol: TCP
    {{- end }}
    {{- if and (include "authsidecar.outboundEnabled" .) $v.outbound.allowRemote }}
    - name: auth-outbound
      containerPort: {{ int $s.ports.outbound }}
      protocol: TCP
    {{- end }}
    - name: auth-admin
      containerPort: {{ int $s.ports.admin }}
      protocol: TCP
  env:
    {{- include "authsidecar.envVars" . | nindent 4 }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $s.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "authsidecar.volumeMounts" . }}
  volumeMounts:
    {{- . | nindent 4 }}
  {{- end }}
  {{- if $s.startupProbe.enabled }}
  startupProbe:
    {{- include "authsidecar.probe" (list "/healthz" $s.startupProbe $s.ports.admin) | nindent 4 }}
  {{- end }}
  livenessProbe:
    {{- include "authsidecar.probe" (list "/healthz" $s.livenessProbe $s.ports.admin) | nindent 4 }}
  readinessProbe:
    {{- include "authsidecar.probe" (list "/readyz" $s.readinessProbe $s.ports.admin) | nindent 4 }}
  {{- with $s.lifecycle }}
  lifecycle:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $s.securityContext | nindent 4 }}
{{- end -}}
