//go:build race

package netio

// raceEnabled turns RawIO off under the race detector, which learns
// that a read happens after the write it reads from through the syscall
// package's own Read and Write: raw system calls would hide that order and
// make every test that hands data over a socket a false report.
const raceEnabled = true
