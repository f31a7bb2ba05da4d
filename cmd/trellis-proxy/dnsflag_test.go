package main

import (
	"strings"
	"testing"
)

// DNS capture's environment variables take true or false; anything else
// stops the proxy with the variable named, before it binds anything.
func TestDNSCaptureEnv(t *testing.T) {
	for _, name := range []string{"ISTIO_META_DNS_CAPTURE", "DNS_CAPTURE"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "sometimes")
			err := run([]string{"--mode", "REDIRECT"})
			if err == nil || !strings.Contains(err.Error(), name+`="sometimes"`) {
				t.Errorf("run with %s=sometimes: %v, want an error naming it", name, err)
			}
		})
	}
}
