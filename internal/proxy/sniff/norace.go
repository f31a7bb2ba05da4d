//go:build !race

package sniff

const raceEnabled = false
