package main

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestServeChecksAddrFirst: a bad --addr is a usage error (exit 2) found
// before the model is opened (the model here does not exist), and a port
// already taken is reported as such, also before the model.
func TestServeChecksAddrFirst(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:http", "127.0.0.1:-1", "bad host!:8080", "[::1:8080"} {
		_, err := runApp(t, "", "serve", "--model", "/nonexistent/model", "--addr", addr)
		var ec cli.ExitCoder
		if !errors.As(err, &ec) || ec.ExitCode() != 2 || !strings.Contains(err.Error(), "--addr") {
			t.Errorf("--addr %q: %v", addr, err)
		}
	}
	for _, addr := range []string{"localhost:8080", "[::1]:8080", ":8080", "[fe80::1%lo]:8080", "my-host.example:65535"} {
		if _, err := checkAddr(addr); err != nil {
			t.Errorf("--addr %q refused: %v", addr, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = runApp(t, "", "serve", "--model", "/nonexistent/model", "--addr", ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("a taken port: %v", err)
	}
}

func TestExposureWarning(t *testing.T) {
	for _, c := range []struct {
		host, key string
		warn      bool
	}{
		{"127.0.0.1", "", false}, {"localhost", "", false}, {"::1", "", false},
		{"0.0.0.0", "", true}, {"", "", true}, {"192.168.1.5", "", true}, {"0.0.0.0", "k", false},
	} {
		w := exposureWarning(c.host, c.key)
		if (w != "") != c.warn || c.warn && !strings.Contains(w, "--api-key") {
			t.Errorf("host %q key %q: %q", c.host, c.key, w)
		}
	}
}
