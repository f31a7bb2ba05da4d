package hcm

import (
	"context"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/upstream"
)

func TestGRPCTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "300m": 300 * time.Millisecond,
		"5u": 5 * time.Microsecond, "99999999n": 99999999, "0m": 0, "99999999H": math.MaxInt64,
	} {
		got, ok := grpcTimeout(http.Header{"Grpc-Timeout": {v}})
		if !ok || got != want {
			t.Errorf("grpc-timeout %q = %v, %v; want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "S", "1", "1s", "123456789S", "-1S", "1.5S"} {
		if got, ok := grpcTimeout(http.Header{"Grpc-Timeout": {v}}); ok {
			t.Errorf("grpc-timeout %q = %v, want invalid", v, got)
		}
	}
}

func TestGRPCLocalReplyStatus(t *testing.T) {
	if got := grpcStatus(http.StatusGatewayTimeout, upstream.UpstreamRequestTimeout); got != 4 {
		t.Errorf("UT = %d, want DEADLINE_EXCEEDED", got)
	}
	if got := grpcStatus(http.StatusServiceUnavailable, upstream.UpstreamConnectionFailure); got != 14 {
		t.Errorf("503 UF = %d, want UNAVAILABLE", got)
	}
	if got := grpcStatus(http.StatusNotFound, upstream.NoRouteFound); got != 12 {
		t.Errorf("404 NR = %d, want UNIMPLEMENTED", got)
	}
	if got := grpcMessage("50% ünï\n"); got != "50%25 %C3%BCn%C3%AF%0A" {
		t.Errorf("grpc-message = %q", got)
	}
}

// A gRPC stream that fails at its deadline, or just before it because the
// hop behind gave up first, ends as DEADLINE_EXCEEDED; one failing well
// before its deadline does not.
func TestDeadlinePassed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	near, cancelNear := context.WithTimeout(context.Background(), deadlineSlack/2)
	defer cancelNear()
	gone, cancelGone := context.WithTimeout(context.Background(), -time.Second)
	defer cancelGone()
	for name, tc := range map[string]struct {
		ctx  context.Context
		want bool
	}{
		"no deadline":      {context.Background(), false},
		"far deadline":     {ctx, false},
		"within the slack": {near, true},
		"deadline passed":  {gone, true},
	} {
		if got := deadlinePassed(tc.ctx); got != tc.want {
			t.Errorf("%s: deadlinePassed = %v, want %v", name, got, tc.want)
		}
	}
}
