package tunnel

import (
	"net/http"
	"testing"
)

// getH2C sends an ordinary request over h2c, which the Dialer never does,
// to see how the server answers it.
func getH2C(t *testing.T, url string) (int, error) {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
