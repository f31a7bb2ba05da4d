package validate

import (
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellismesh/trellis/internal/config/field"
)

// PeerAuthentication checks one PeerAuthentication.
func PeerAuthentication(m Meta, pa *security.PeerAuthentication) field.List { return nil }

// AuthorizationPolicy checks one AuthorizationPolicy.
func AuthorizationPolicy(m Meta, ap *security.AuthorizationPolicy) field.List { return nil }

// RequestAuthentication checks one RequestAuthentication.
func RequestAuthentication(m Meta, ra *security.RequestAuthentication) field.List { return nil }

// Telemetry checks one Telemetry.
func Telemetry(m Meta, t *telemetry.Telemetry) field.List { return nil }

// MeshConfig checks a decoded MeshConfig; p is where it sits (data[mesh]).
func MeshConfig(p *field.Path, mc *meshv1alpha1.MeshConfig) field.List { return nil }
