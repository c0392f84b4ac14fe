package parallel

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// TestNCCLNeedsCUDADevices: NCCL is refused over CPU backends, naming the
// rank, before NCCL is even looked for.
func TestNCCLNeedsCUDADevices(t *testing.T) {
	_, err := NewNCCL(cpus(t, 2))
	if err == nil || !strings.Contains(err.Error(), "rank 0 is cpu") {
		t.Fatalf("NCCL over CPU backends: %v", err)
	}
}

// TestNCCLLoad: where libnccl is missing (this machine, a Mac) the error
// says NCCL was not found and which library was looked for; where it is
// present its version reads as NCCL 2.x.y.
func TestNCCLLoad(t *testing.T) {
	v, err := NCCLVersion()
	if err != nil {
		if !errors.Is(err, ErrNoNCCL) || !strings.Contains(err.Error(), "libnccl") {
			t.Fatalf("NCCL missing, but the error does not say so: %v", err)
		}
		t.Log(err)
		return
	}
	if !regexp.MustCompile(`^2\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("NCCL version %q", v)
	}
	t.Logf("NCCL %s", v)
}
