package chart

import (
	"testing"
)

const certManagerCSIValues = "../../charts/authsidecar/ci/cert-manager-csi-values.yaml"

// TestCertManagerCSI: the pod's certificate from the cert-manager CSI
// driver and trust-manager bundles reach the sidecar as files, each
// variable naming a file in a directory the sidecar mounts.
func TestCertManagerCSI(t *testing.T) {
	t.Run("one CSI volume serves both directions, the bundle both CA files", func(t *testing.T) {
		spec := &deployment(t, render(t, chartDir, "-f", certManagerCSIValues)).Spec.Template.Spec
		c, _ := sidecarOf(t, spec, "authsidecar")
		diffLists(t, "mounts", mountList(c), []string{
			"authsidecar-client-ca at /etc/authsidecar/client-ca ro=true",
			"authsidecar-client-secret at /etc/authsidecar/client-secret ro=true",
			"authsidecar-outbound-ca at /etc/authsidecar/outbound-ca ro=true",
			"authsidecar-pod-tls at /etc/authsidecar/pod-tls ro=true",
		})
	})
	t.Run("the CSI certificate's CA as client CA and upstream trust", func(t *testing.T) {
		objs := render(t, chartDir, "-f", certManagerCSIValues,
			"--set", "inbound.tls.clientCA.configMap=", "--set", "inbound.tls.clientCA.csi=true",
			"--set", "outbound.tls.ca.configMap=", "--set", "outbound.tls.ca.csi=true")
		spec := &deployment(t, objs).Spec.Template.Spec
		c, native := sidecarOf(t, spec, "authsidecar")
		checkSidecar(t, spec, c, native, 9464, nil)
		for name, want := range map[string]string{
			"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE": "/etc/authsidecar/pod-tls/ca.crt",
			"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE":   "/etc/authsidecar/pod-tls/ca.crt",
		} {
			if got, _ := envValue(c, name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		diffLists(t, "mounts", mountList(c), []string{
			"authsidecar-client-secret at /etc/authsidecar/client-secret ro=true",
			"authsidecar-pod-tls at /etc/authsidecar/pod-tls ro=true",
		})
		diffLists(t, "volumes", volumeList(spec), []string{
			"authsidecar-client-secret: secret payments-oauth-client client-secret->client-secret",
			csiVolume,
		})
	})
	t.Run("extra attributes win, and the fs-group follows the sidecar's group", func(t *testing.T) {
		objs := render(t, chartDir, "-f", certManagerCSIValues,
			"--set", "sidecar.securityContext.runAsGroup=1001",
			"--set", "certManagerCsi.extraAttributes.csi\\.cert-manager\\.io/duration=1h",
			"--set-string", "certManagerCsi.extraAttributes.csi\\.cert-manager\\.io/reuse-private-key=true")
		spec := &deployment(t, objs).Spec.Template.Spec
		for _, v := range spec.Volumes {
			if v.Name != "authsidecar-pod-tls" {
				continue
			}
			a := v.CSI.VolumeAttributes
			if a["csi.cert-manager.io/duration"] != "1h" || a["csi.cert-manager.io/reuse-private-key"] != "true" || a["csi.cert-manager.io/fs-group"] != "1001" {
				t.Errorf("volumeAttributes = %v", a)
			}
			return
		}
		t.Errorf("no authsidecar-pod-tls volume: %v", volumeList(spec))
	})
	t.Run("a client CA from a trust-manager Secret target", func(t *testing.T) {
		spec := &deployment(t, render(t, chartDir, "-f", certManagerCSIValues,
			"--set", "inbound.tls.clientCA.configMap=", "--set", "inbound.tls.clientCA.secretName=shop-ca-bundle",
			"--set", "inbound.tls.clientCA.key=trust-bundle.pem")).Spec.Template.Spec
		if got := volumeList(spec)[0]; got != "authsidecar-client-ca: secret shop-ca-bundle trust-bundle.pem->ca.crt" {
			t.Errorf("client CA volume = %q", got)
		}
	})

	inbound := []string{"inbound.issuers[0]=" + keycloak, "inbound.audiences[0]=a", "inbound.tls.enabled=true"}
	outbound := []string{"outbound.issuer=" + keycloak, "outbound.clientId=o", "outbound.existingSecret=s", "outbound.routes.x.url=https://x"}
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"a CSI certificate without an issuer", append(inbound, "inbound.tls.csi=true"),
			"authsidecar: certManagerCsi.issuerName is required when a certificate or CA comes from the cert-manager CSI driver"},
		{"a Secret and the CSI certificate for inbound TLS", append(inbound, "inbound.tls.csi=true", "inbound.tls.secretName=t", "certManagerCsi.issuerName=i"),
			"authsidecar: set inbound.tls.secretName or inbound.tls.csi, not both"},
		{"two client CA sources", append(inbound, "inbound.tls.secretName=t", "inbound.tls.clientCA.enabled=true", "inbound.tls.clientCA.configMap=c", "inbound.tls.clientCA.secretName=s"),
			"authsidecar: set one of inbound.tls.clientCA.secretName, .configMap and .csi"},
		{"a client CA with nothing to take it from", append(inbound, "inbound.tls.csi=true", "certManagerCsi.issuerName=i", "inbound.tls.clientCA.enabled=true"),
			"authsidecar: inbound.tls.clientCA needs a CA bundle: set its secretName, configMap (a trust-manager Bundle) or csi"},
		{"two upstream CA sources", append(outbound, "outbound.tls.ca.configMap=c", "outbound.tls.ca.csi=true", "certManagerCsi.issuerName=i"),
			"authsidecar: set one of outbound.tls.ca.configMap, .secret and .csi"},
		{"a client certificate from a Secret and the CSI driver", append(outbound, "outbound.tls.clientCertSecret=c", "outbound.tls.clientCertCsi=true", "certManagerCsi.issuerName=i"),
			"authsidecar: set outbound.tls.clientCertSecret or outbound.tls.clientCertCsi, not both"},
		{"an attribute of another driver", []string{"certManagerCsi.extraAttributes.spiffe\\.csi\\.cert-manager\\.io/trust-domain=shop"},
			"invalid propertyName 'spiffe.csi.cert-manager.io/trust-domain'"},
		{"an unknown issuer kind", []string{"certManagerCsi.issuerKind=Vault"},
			"- at '/certManagerCsi/issuerKind': value must be one of 'Issuer', 'ClusterIssuer'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(t, chartDir, valuesArgs("", tc.set)...)
			wantErr(t, err, tc.want)
		})
	}
}
