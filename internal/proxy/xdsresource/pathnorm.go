package xdsresource

// PathNormalization is what a connection manager does to a request's path
// before its filters and routing see it (Envoy's normalize_path,
// merge_slashes and path_with_escaped_slashes_action): the path it
// leaves is the one authorization judges, routes match and the upstream
// is sent, so a request is judged and served in one spelling.
type PathNormalization struct {
	// Normalize is normalize_path: RFC 3986 dot segments removed,
	// backslashes made slashes, unreserved characters percent-decoded.
	Normalize bool
	// MergeSlashes is merge_slashes: runs of slashes made one.
	MergeSlashes bool
	// EscapedSlashes is path_with_escaped_slashes_action; unset
	// (EscapedSlashesDefault) is Envoy's default, which keeps them.
	EscapedSlashes EscapedSlashesAction
}

// EscapedSlashesAction is what becomes of %2F, %2f, %5C and %5c in a
// path; the values are Envoy's enum's.
type EscapedSlashesAction int32

const (
	EscapedSlashesDefault  EscapedSlashesAction = iota // IMPLEMENTATION_SPECIFIC_DEFAULT: keep
	EscapedSlashesKeep                                 // KEEP_UNCHANGED
	EscapedSlashesReject                               // REJECT_REQUEST: 400
	EscapedSlashesRedirect                             // UNESCAPE_AND_REDIRECT: 307 to the unescaped path
	EscapedSlashesForward                              // UNESCAPE_AND_FORWARD
)

func (a EscapedSlashesAction) String() string {
	switch a {
	case EscapedSlashesDefault:
		return "IMPLEMENTATION_SPECIFIC_DEFAULT"
	case EscapedSlashesKeep:
		return "KEEP_UNCHANGED"
	case EscapedSlashesReject:
		return "REJECT_REQUEST"
	case EscapedSlashesRedirect:
		return "UNESCAPE_AND_REDIRECT"
	case EscapedSlashesForward:
		return "UNESCAPE_AND_FORWARD"
	}
	return "unknown"
}

// decodeEscapedSlashesAction reads path_with_escaped_slashes_action. An
// action the proxy does not know is refused: guessing one could forward
// a path another hop reads differently.
func decodeEscapedSlashesAction(v int32) (EscapedSlashesAction, error) {
	a := EscapedSlashesAction(v)
	switch a {
	case EscapedSlashesDefault, EscapedSlashesKeep, EscapedSlashesReject, EscapedSlashesRedirect, EscapedSlashesForward:
		return a, nil
	}
	return 0, errorf("unknown action %d (trellis-proxy knows KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_REDIRECT, UNESCAPE_AND_FORWARD)", v)
}
