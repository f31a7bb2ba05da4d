package validate

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config/field"
)

// VirtualService checks one VirtualService.
func VirtualService(m Meta, vs *networking.VirtualService) field.List { return nil }

// DestinationRule checks one DestinationRule.
func DestinationRule(m Meta, dr *networking.DestinationRule) field.List { return nil }

// ServiceEntry checks one ServiceEntry.
func ServiceEntry(m Meta, se *networking.ServiceEntry) field.List { return nil }

// WorkloadEntry checks one WorkloadEntry.
func WorkloadEntry(m Meta, we *networking.WorkloadEntry) field.List { return nil }

// Sidecar checks one Sidecar.
func Sidecar(m Meta, sc *networking.Sidecar) field.List { return nil }

// Gateway checks one Istio Gateway.
func Gateway(m Meta, gw *networking.Gateway) field.List { return nil }
