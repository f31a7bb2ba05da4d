// Package leak finds goroutines a test left running. Goroutines are told
// apart by id, not counted: a count hides a leak behind a goroutine that
// happened to end meanwhile.
package leak
