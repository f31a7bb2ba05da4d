package tunnel

import (
	"fmt"
	"net/http"
)

// StatusError is a tunnel the server refused: the status says why (400 a
// malformed request, 403 not authorized, 503 the app refused the
// connection), so the proxy can choose its response flag (UF, URX, …).
type StatusError struct {
	Tunnel string // the tunnel address (ip:15008)
	Target string // the :authority asked for
	Code   int
	Body   string // the server's explanation, truncated
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("tunnel %s to %s: %d %s", e.Tunnel, e.Target, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}
