//go:build !linux

package redirect

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// Transparent capture is nftables and conntrack: Linux only. These keep callers portable and
// fail with a reason instead of at link time.
var errNotLinux = fmt.Errorf("redirect: transparent capture needs Linux (nftables), not %s: %w", runtime.GOOS, errors.ErrUnsupported)

func Apply(context.Context, Ruleset) error           { return errNotLinux }
func ApplyIn(context.Context, string, Ruleset) error { return errNotLinux }
func Remove(string) error                            { return errNotLinux }
func RemoveIn(string, string) error                  { return errNotLinux }
