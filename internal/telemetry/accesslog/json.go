package accesslog

import (
	"strconv"
	"unicode/utf8"
)

// appendJSON writes e as one JSON object with Istio's default JSON
// access-log keys (plus downstream_peer_principal, trace_id and direction)
// in that order, and a newline. Values are typed as Envoy types them: codes,
// bytes and durations numbers, the rest strings, null for what the request
// did not have; response_flags is "-" when there are none, as in Envoy.
func appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"start_time":"`...)
	b = appendStartTime(b, e)
	b = append(b, `","method":`...)
	b = appendJSONOrNull(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendJSONOrNull(b, e.Path)
	b = append(b, `,"protocol":`...)
	b = appendJSONOrNull(b, e.Protocol)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(e.ResponseCode), 10)
	b = append(b, `,"response_flags":`...)
	if e.ResponseFlags == "" {
		b = append(b, `"-"`...)
	} else {
		b = appendJSONString(b, e.ResponseFlags)
	}
	b = append(b, `,"response_code_details":`...)
	b = appendJSONOrNull(b, e.ResponseCodeDetails)
	b = append(b, `,"connection_termination_details":`...)
	b = appendJSONOrNull(b, e.ConnectionTerminationDetails)
	b = append(b, `,"upstream_transport_failure_reason":`...)
	b = appendJSONOrNull(b, e.UpstreamTransportFailureReason)
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendUint(b, e.BytesReceived, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendUint(b, e.BytesSent, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
	b = append(b, `,"upstream_service_time":`...)
	b = appendJSONOrNull(b, e.UpstreamServiceTime)
	b = append(b, `,"x_forwarded_for":`...)
	b = appendJSONOrNull(b, e.XForwardedFor)
	b = append(b, `,"user_agent":`...)
	b = appendJSONOrNull(b, e.UserAgent)
	b = append(b, `,"request_id":`...)
	b = appendJSONOrNull(b, e.RequestID)
	b = append(b, `,"authority":`...)
	b = appendJSONOrNull(b, e.Authority)
	b = append(b, `,"upstream_host":`...)
	b = appendJSONOrNull(b, e.UpstreamHost)
	b = append(b, `,"upstream_cluster":`...)
	b = appendJSONOrNull(b, e.UpstreamCluster)
	b = append(b, `,"upstream_local_address":`...)
	b = appendJSONOrNull(b, e.UpstreamLocalAddress)
	b = append(b, `,"downstream_local_address":`...)
	b = appendJSONOrNull(b, e.DownstreamLocalAddress)
	b = append(b, `,"downstream_remote_address":`...)
	b = appendJSONOrNull(b, e.DownstreamRemoteAddress)
	b = append(b, `,"requested_server_name":`...)
	b = appendJSONOrNull(b, e.RequestedServerName)
	b = append(b, `,"route_name":`...)
	b = appendJSONOrNull(b, e.RouteName)
	// The contract gives these three "" rather than null when absent: the
	// dashboard and tests read them as plain strings.
	b = append(b, `,"downstream_peer_principal":`...)
	b = appendJSONString(b, e.DownstreamPeerPrincipal)
	b = append(b, `,"trace_id":`...)
	b = appendJSONString(b, e.TraceID)
	b = append(b, `,"direction":`...)
	b = appendJSONString(b, e.Direction)
	return append(b, "}\n"...)
}

func appendJSONOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does: control characters,
// quote and backslash escaped, invalid UTF-8 as U+FFFD, and U+2028/U+2029
// escaped so a line stays one line for any reader.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
