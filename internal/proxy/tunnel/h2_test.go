package tunnel

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// http2TestTransport sends ordinary requests over h2c, which the Dialer
// never does, to check how the server answers them.
type http2TestTransport struct {
	t *http2.Transport
}

func (h *http2TestTransport) Get(t *testing.T, url string) (int, error) {
	if h.t == nil {
		h.t = &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := h.t.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (h *http2TestTransport) Close() {
	if h.t != nil {
		h.t.CloseIdleConnections()
	}
}
