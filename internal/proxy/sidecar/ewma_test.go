package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// TestPeakEWMAOnTheWire: a DestinationRule annotated
// trellis.io/load-balancer: PEAK_EWMA makes the client's sidecar avoid a
// slow backend that plain least-request cannot tell from a fast one.
//
// The requests are sequential on purpose: that is where peak EWMA earns
// its keep. With one request at a time both hosts always have 0 active,
// so least-request picks either at random and the slow one answers about
// half; peak EWMA remembers the slow host's 80 ms (a peak, taken at once)
// against the fast host's estimate, which starts at the 30 ms default and
// only falls from there, and sends it nothing after its first answer.
// (Under concurrency least-request already starves a slow host, since its
// requests pile up; counts would no longer separate the two.) The test
// counts which backend answered and never compares timings.
func TestPeakEWMAOnTheWire(t *testing.T) {
	leak.Check(t)
	const slowDelay = 80 * time.Millisecond
	m, c := versionsMesh(t, "127.77.50", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  annotations: {trellis.io/load-balancer: PEAK_EWMA}
spec:
  host: reviews
`, []string{"fast", "slow"}, func(w http.ResponseWriter, r *http.Request) {
		name := w.Header().Get("X-Backend")
		if name == "slow" {
			time.Sleep(slowDelay)
		}
		io.WriteString(w, name)
	})

	const n = 80
	ewma := countAnswers(t, c, n, nil)
	if ewma["fast"]+ewma["slow"] != n {
		t.Fatalf("answers %v, want %d from fast and slow", ewma, n)
	}
	// The slow host may take the first request or two, while its estimate
	// is still the default; after its first answer it gets none.
	if ewma["slow"] > 3 {
		t.Errorf("with PEAK_EWMA the slow backend answered %d of %d (%v), want at most 3", ewma["slow"], n, ewma)
	}

	// Without the annotation the cluster is plain least-request again.
	m.Write("mesh.yaml", strings.Replace(m.Read("mesh.yaml"), "  annotations: {trellis.io/load-balancer: PEAK_EWMA}\n", "", 1))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := countAnswers(t, c, 10, nil); got["slow"] == 0 {
			return fmt.Sprintf("still avoiding the slow backend after the annotation was removed: %v", got)
		}
		return ""
	})
	plain := countAnswers(t, c, n, nil)
	// Binomial(80, 1/2): fewer than 20 has odds of about 1 in 10^6.
	if plain["slow"] < 20 {
		t.Errorf("without PEAK_EWMA the slow backend answered %d of %d (%v), want about half", plain["slow"], n, plain)
	}
	if plain["fast"] >= ewma["fast"] {
		t.Errorf("fast backend answered %d of %d without PEAK_EWMA and %d with it, want clearly more with it", plain["fast"], n, ewma["fast"])
	}
	t.Logf("fast/slow with PEAK_EWMA %d/%d, without %d/%d", ewma["fast"], ewma["slow"], plain["fast"], plain["slow"])
}
