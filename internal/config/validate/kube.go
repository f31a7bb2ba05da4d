package validate

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/trellismesh/trellis/internal/config/field"
)

// Namespace checks one Namespace.
func Namespace(m Meta, ns *corev1.Namespace) field.List { return nil }

// Service checks one Service.
func Service(m Meta, svc *corev1.Service) field.List { return nil }

// ServiceAccount checks one ServiceAccount.
func ServiceAccount(m Meta, sa *corev1.ServiceAccount) field.List { return nil }

// ConfigMap checks one ConfigMap.
func ConfigMap(m Meta, cm *corev1.ConfigMap) field.List { return nil }

// Pod checks one Pod.
func Pod(m Meta, pod *corev1.Pod) field.List { return nil }

// Deployment checks one Deployment.
func Deployment(m Meta, d *appsv1.Deployment) field.List { return nil }

// EndpointSlice checks one EndpointSlice.
func EndpointSlice(m Meta, es *discoveryv1.EndpointSlice) field.List { return nil }
