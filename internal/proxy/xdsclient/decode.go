package xdsclient

// defaultDecode is used when Config.Decode is nil; it becomes
// xdsresource.Decode once that package offers one.
var defaultDecode func(typeURL string, value []byte) (string, any, error)
