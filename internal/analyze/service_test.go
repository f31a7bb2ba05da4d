package analyze

import "testing"

func TestPortNames(t *testing.T) {
	objs := parse(t, "svc.yaml", `
apiVersion: v1
kind: Service
metadata: {name: mixed}
spec:
  selector: {app: mixed}
  ports:
  - {name: http-web, port: 80}
  - {name: web, port: 81, targetPort: 8081}
  - {name: custom, port: 82, appProtocol: grpc}
  - {name: grpc-web-ui, port: 83}
  - {name: dns, port: 84, protocol: UDP}
  - {name: db, port: 3306}
  - {name: h2c, port: 85, appProtocol: kubernetes.io/h2c}
  - {name: metrics, port: 86, targetPort: metrics}
  - {name: tcp, port: 87}
  - {name: redis-cache, port: 88}
  - {name: x, port: 89, appProtocol: mystery}
---
apiVersion: v1
kind: Service
metadata: {name: unnamed}
spec:
  selector: {app: unnamed}
  ports:
  - port: 8080
`)
	check(t, run(objs),
		`Info [IST0118] (Service default/mixed svc.yaml#1) spec.ports[1].name: Port name web (port: 81, targetPort: 8081) doesn't follow the naming convention of Istio port.`,
		`Info [IST0118] (Service default/mixed svc.yaml#1) spec.ports[7].name: Port name metrics (port: 86, targetPort: metrics) doesn't follow the naming convention of Istio port.`,
		`Info [IST0118] (Service default/mixed svc.yaml#1) spec.ports[10].name: Port name x (port: 89, targetPort: 89) doesn't follow the naming convention of Istio port.`,
		`Info [IST0118] (Service default/unnamed svc.yaml#2) spec.ports[0].name: Port name  (port: 8080, targetPort: 8080) doesn't follow the naming convention of Istio port.`,
	)
}
