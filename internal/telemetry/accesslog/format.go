package accesslog

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultTextFormat is Istio's default TEXT access-log format (MeshConfig
// accessLogEncoding TEXT with no accessLogFormat).
const DefaultTextFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

type opKind uint8

const (
	opLiteral opKind = iota
	opStartTime
	opProtocol
	opResponseCode
	opResponseFlags
	opResponseCodeDetails
	opConnectionTerminationDetails
	opUpstreamTransportFailureReason
	opBytesReceived
	opBytesSent
	opDuration
	opUpstreamHost
	opUpstreamCluster
	opUpstreamLocalAddress
	opDownstreamLocalAddress
	opDownstreamLocalAddressWithoutPort
	opDownstreamRemoteAddress
	opDownstreamRemoteAddressWithoutPort
	opDownstreamPeerURISAN
	opRequestedServerName
	opRouteName
	opTraceID
	opReq
	opResp
)

// operators are the command operators without arguments a format may use.
var operators = map[string]opKind{
	"START_TIME":                             opStartTime,
	"PROTOCOL":                               opProtocol,
	"RESPONSE_CODE":                          opResponseCode,
	"RESPONSE_FLAGS":                         opResponseFlags,
	"RESPONSE_CODE_DETAILS":                  opResponseCodeDetails,
	"CONNECTION_TERMINATION_DETAILS":         opConnectionTerminationDetails,
	"UPSTREAM_TRANSPORT_FAILURE_REASON":      opUpstreamTransportFailureReason,
	"BYTES_RECEIVED":                         opBytesReceived,
	"BYTES_SENT":                             opBytesSent,
	"DURATION":                               opDuration,
	"UPSTREAM_HOST":                          opUpstreamHost,
	"UPSTREAM_CLUSTER":                       opUpstreamCluster,
	"UPSTREAM_CLUSTER_RAW":                   opUpstreamCluster,
	"UPSTREAM_LOCAL_ADDRESS":                 opUpstreamLocalAddress,
	"DOWNSTREAM_LOCAL_ADDRESS":               opDownstreamLocalAddress,
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":  opDownstreamLocalAddressWithoutPort,
	"DOWNSTREAM_REMOTE_ADDRESS":              opDownstreamRemoteAddress,
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": opDownstreamRemoteAddressWithoutPort,
	"DOWNSTREAM_PEER_URI_SAN":                opDownstreamPeerURISAN,
	"REQUESTED_SERVER_NAME":                  opRequestedServerName,
	"ROUTE_NAME":                             opRouteName,
	"TRACE_ID":                               opTraceID,
}

// part is one piece of a compiled TEXT format: a literal or an operator.
type part struct {
	op  opKind
	lit string
	// header and alt are REQ/RESP's header and its fallback (REQ(A?B)),
	// canonical (or pseudo-header) form.
	header, alt string
	// maxLen truncates the value (%REQ(X):N%); 0 means no limit.
	maxLen int
}

type textFormat []part

// compileText parses an Envoy TEXT format string. An unknown or malformed
// command operator is an error: config is validated before it reaches the
// proxy, so one here is a bug or a control plane newer than this proxy.
func compileText(format string) (textFormat, error) {
	var parts textFormat
	lit := 0
	for i := 0; i < len(format); {
		if format[i] != '%' {
			i++
			continue
		}
		end := strings.IndexByte(format[i+1:], '%')
		if end < 0 {
			return nil, fmt.Errorf("access log format: %q at offset %d has no closing %%: close the command operator (Envoy has no escape for a literal %%)", format[i:], i)
		}
		token := format[i+1 : i+1+end]
		if token == "" {
			return nil, fmt.Errorf("access log format: empty command operator %%%% at offset %d: Envoy has no escape for %%, remove it", i)
		}
		p, err := parseOperator(token)
		if err != nil {
			return nil, fmt.Errorf("access log format: %%%s%% at offset %d: %w (this proxy may be older than the control plane)", token, i, err)
		}
		if lit < i {
			parts = append(parts, part{op: opLiteral, lit: format[lit:i]})
		}
		parts = append(parts, p)
		i += end + 2
		lit = i
	}
	if lit < len(format) {
		parts = append(parts, part{op: opLiteral, lit: format[lit:]})
	}
	return parts, nil
}

func parseOperator(token string) (part, error) {
	var p part
	name, rest := token, ""
	if j := strings.IndexByte(token, '('); j >= 0 {
		name = token[:j]
		if name == "START_TIME" {
			return p, fmt.Errorf("START_TIME with a custom time format is not supported by this proxy: use %%START_TIME%% (UTC, milliseconds)")
		}
		k := strings.IndexByte(token, ')')
		if k < j {
			return p, fmt.Errorf("%q is not closed by ')'", token[:j+1])
		}
		rest = token[k+1:]
		arg := token[j+1 : k]
		switch name {
		case "REQ", "RESP":
			if arg == "" {
				return p, fmt.Errorf("%s() needs a header name", name)
			}
			p.op = opReq
			if name == "RESP" {
				p.op = opResp
			}
			h, alt, _ := strings.Cut(arg, "?")
			p.header, p.alt = headerKey(h), headerKey(alt)
		default:
			return p, fmt.Errorf("unknown command operator %s(...) (supported: REQ(header), RESP(header), %s)", name, supported())
		}
	} else {
		name, rest, _ = strings.Cut(token, ":")
		if rest != "" {
			rest = ":" + rest
		}
		op, ok := operators[name]
		if !ok {
			return p, fmt.Errorf("unknown command operator %s (supported: REQ(header), RESP(header), %s)", name, supported())
		}
		p.op = op
	}
	if rest != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
		if !strings.HasPrefix(rest, ":") || err != nil || n <= 0 {
			return p, fmt.Errorf("%q after the operator is not a length limit: write :N with N > 0", rest)
		}
		p.maxLen = n
	}
	return p, nil
}

func supported() string {
	names := make([]string, 0, len(operators))
	for n := range operators {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// headerKey is the form a header is looked up by: pseudo-headers
// lowercased, others canonical, so the lookup on the request path is a
// plain map index.
func headerKey(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == ':' {
		return strings.ToLower(h)
	}
	return http.CanonicalHeaderKey(h)
}

// reqValue is %REQ(h)%: the Entry's own field for the headers it carries,
// else the request header.
func reqValue(e *Entry, h string) string {
	switch h {
	case ":method":
		return e.Method
	case ":path", "X-Envoy-Original-Path":
		// Entry.Path is already X-Envoy-Original-Path else :path, which is
		// what Istio's formats ask for with REQ(X-ENVOY-ORIGINAL-PATH?:PATH).
		return e.Path
	case ":authority", "Host":
		return e.Authority
	case ":protocol", ":scheme":
		return headerValue(e.RequestHeaders, h)
	case "X-Forwarded-For":
		return e.XForwardedFor
	case "User-Agent":
		return e.UserAgent
	case "X-Request-Id":
		return e.RequestID
	}
	return headerValue(e.RequestHeaders, h)
}

func respValue(e *Entry, h string) string {
	if h == "X-Envoy-Upstream-Service-Time" && e.UpstreamServiceTime != "" {
		return e.UpstreamServiceTime
	}
	return headerValue(e.ResponseHeaders, h)
}

func headerValue(hs http.Header, h string) string {
	if hs == nil {
		return ""
	}
	if v := hs[h]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// appendText renders e in format f.
func (f textFormat) appendText(b []byte, e *Entry) []byte {
	for i := range f {
		p := &f[i]
		var s string
		switch p.op {
		case opLiteral:
			b = append(b, p.lit...)
			continue
		case opStartTime:
			b = appendStartTime(b, e)
			continue
		case opResponseCode:
			b = strconv.AppendInt(b, int64(e.ResponseCode), 10)
			continue
		case opBytesReceived:
			b = strconv.AppendUint(b, e.BytesReceived, 10)
			continue
		case opBytesSent:
			b = strconv.AppendUint(b, e.BytesSent, 10)
			continue
		case opDuration:
			b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
			continue
		case opDownstreamPeerURISAN:
			if e.DownstreamPeerPrincipal == "" {
				b = append(b, '-')
				continue
			}
			b = append(b, "spiffe://"...)
			s = e.DownstreamPeerPrincipal
			if p.maxLen > 0 {
				s = truncate(s, max(p.maxLen-len("spiffe://"), 0))
			}
			b = append(b, s...)
			continue
		case opReq:
			s = reqValue(e, p.header)
			if s == "" && p.alt != "" {
				s = reqValue(e, p.alt)
			}
		case opResp:
			s = respValue(e, p.header)
			if s == "" && p.alt != "" {
				s = respValue(e, p.alt)
			}
		default:
			s = stringField(e, p.op)
		}
		if s == "" {
			b = append(b, '-')
			continue
		}
		if p.maxLen > 0 {
			s = truncate(s, p.maxLen)
		}
		b = append(b, s...)
	}
	return b
}

func stringField(e *Entry, op opKind) string {
	switch op {
	case opProtocol:
		return e.Protocol
	case opResponseFlags:
		return e.ResponseFlags
	case opResponseCodeDetails:
		return e.ResponseCodeDetails
	case opConnectionTerminationDetails:
		return e.ConnectionTerminationDetails
	case opUpstreamTransportFailureReason:
		return e.UpstreamTransportFailureReason
	case opUpstreamHost:
		return e.UpstreamHost
	case opUpstreamCluster:
		return e.UpstreamCluster
	case opUpstreamLocalAddress:
		return e.UpstreamLocalAddress
	case opDownstreamLocalAddress:
		return e.DownstreamLocalAddress
	case opDownstreamLocalAddressWithoutPort:
		return withoutPort(e.DownstreamLocalAddress)
	case opDownstreamRemoteAddress:
		return e.DownstreamRemoteAddress
	case opDownstreamRemoteAddressWithoutPort:
		return withoutPort(e.DownstreamRemoteAddress)
	case opRequestedServerName:
		return e.RequestedServerName
	case opRouteName:
		return e.RouteName
	case opTraceID:
		return e.TraceID
	}
	return ""
}

// withoutPort strips ":port" from "ip:port" or "[ip6]:port" without
// allocating.
func withoutPort(a string) string {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a
	}
	if a[0] == '[' {
		if a[i-1] != ']' {
			return a // [ip6] without a port
		}
		return a[1 : i-1]
	}
	if strings.IndexByte(a, ':') != i {
		return a // a bare IPv6 address
	}
	return a[:i]
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// appendStartTime writes Envoy's default START_TIME: UTC, milliseconds,
// e.g. 2026-12-08T04:16:08.123Z.
func appendStartTime(b []byte, e *Entry) []byte {
	return e.StartTime.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
}
