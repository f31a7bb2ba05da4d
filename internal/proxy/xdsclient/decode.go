package xdsclient

import "github.com/trellismesh/trellis/internal/proxy/xdsresource"

// defaultDecode is used when Config.Decode is nil.
var defaultDecode = xdsresource.Decode
