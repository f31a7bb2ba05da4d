package certs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// maxCredential bounds what is read from a credential descriptor: a
// token is tens of bytes, and a writer that never stops must not grow the
// proxy's memory.
const maxCredential = 4096

// ReadCredentialFD reads the proxy's credential from the inherited file
// descriptor fd (a pipe its supervisor wrote the token to and closed, as
// trellis up does) and closes it. The token is read once at start and
// kept in memory only: it is never written to disk, and the descriptor
// is closed so nothing else in the process, or reading /proc, finds it
// there afterwards.
func ReadCredentialFD(fd uintptr) (string, error) {
	f := os.NewFile(fd, "credential")
	if f == nil {
		return "", fmt.Errorf("credential fd %d: not a valid descriptor", fd)
	}
	defer f.Close()
	return readCredential(f, fmt.Sprintf("credential fd %d", fd))
}

func readCredential(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCredential+1))
	if err != nil {
		if errors.Is(err, syscall.EBADF) || errors.Is(err, os.ErrInvalid) {
			return "", fmt.Errorf("%s: not open in this process (%w): start the proxy with the credential pipe on it, or use --credential-file", what, err)
		}
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxCredential {
		return "", fmt.Errorf("%s: more than %d bytes, which no credential is: check what the descriptor is", what, maxCredential)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s: empty: the proxy needs the token written to it and the pipe closed", what)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: holds more than one token", what)
	}
	return tok, nil
}
