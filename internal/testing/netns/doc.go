// Package netns gives tests network namespaces of their own: created with
// lo up, removed when the test ends, and a way to run code on a thread
// inside one. Nothing here touches the root namespace's rules, routes or
// interfaces.
package netns
