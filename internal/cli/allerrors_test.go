package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// `trellis validate` reports every error of an object in one run: a value
// that does not even decode (perTryTimeout: 2 seconds) no longer hides the
// object's other errors (a negative weight), so the user fixes both at once.
func TestValidateReportsEveryErrorOfAnObject(t *testing.T) {
	dir := writeFiles(t, map[string]string{"retries.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: payment-service
spec:
  hosts: [payment-service]
  http:
  - retries:
      attempts: 3
      perTryTimeout: 2 seconds
    route:
    - destination: {host: payment-service, subset: v1}
      weight: -10
    - destination: {host: payment-service, subset: v2}
      weight: 110
`})
	code, out, errOut := validate(t, dir, false, "retries.yaml")
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	want := []string{
		`retries.yaml#1 VirtualService default/payment-service: spec.http[0].retries.perTryTimeout: invalid duration "2 seconds": use a number with a unit, such as "500ms" or "2s"`,
		`retries.yaml#1 VirtualService default/payment-service: spec.http[0].route[0].weight: must be >= 0`,
		`validation failed: 2 errors in 1 file of 1`,
	}
	if diff := cmp.Diff(want, lines(errOut)); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}
