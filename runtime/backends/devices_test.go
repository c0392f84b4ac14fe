package backends

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend/cuda"
)

func TestParseDevices(t *testing.T) {
	for s, want := range map[string][]int{"": nil, "all": nil, "0": {0}, "0,1": {0, 1}, " 2, 0 ": {2, 0}} {
		got, err := ParseDevices(s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseDevices(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"0,0", "-1", "a", "0,,1", "1.5", "0;1"} {
		if _, err := ParseDevices(s); err == nil || !strings.Contains(err.Error(), "--gpus") {
			t.Errorf("ParseDevices(%q): %v, want an error naming --gpus", s, err)
		}
	}
}

// TestOpenDevicesCPU: on the CPU each listed device is a backend of its
// own joined in process, "all" is one, and the choice is said on the log.
func TestOpenDevicesCPU(t *testing.T) {
	var log bytes.Buffer
	bes, coll, err := OpenDevices("cpu", []int{0, 1, 2}, Options{Threads: 1, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, be := range bes {
			be.Close()
		}
	}()
	if len(bes) != 3 || coll.Size() != 3 || bes[0] == bes[1] || bes[1] == bes[2] {
		t.Fatalf("%d backends, collective of %d", len(bes), coll.Size())
	}
	if !strings.Contains(log.String(), "3 logical cpu devices") {
		t.Errorf("log %q does not say how the devices are joined", log.String())
	}
	one, c1, err := OpenDevices("cpu", nil, Options{Threads: 1})
	if err != nil || len(one) != 1 || c1.Size() != 1 {
		t.Fatalf("all visible on the CPU: %d backends, %v", len(one), err)
	}
	one[0].Close()
}

// TestOpenDevicesCUDAMissing: asking for CUDA devices where there are none
// is an error (nothing left open), not a silent CPU run.
func TestOpenDevicesCUDAMissing(t *testing.T) {
	if _, err := Open("cuda", Options{}); err == nil {
		t.Skip("a CUDA device is present: this checks a machine without one")
	}
	bes, _, err := OpenDevices("cuda", []int{0, 1}, Options{})
	if err == nil || bes != nil || !strings.Contains(err.Error(), "cuda") {
		t.Fatalf("CUDA devices 0,1 without CUDA: %d backends, %v", len(bes), err)
	}
}

// TestParseDevicesSaysWhich: the error quotes the list and names the item
// that is not a device number.
func TestParseDevicesSaysWhich(t *testing.T) {
	for s, want := range map[string]string{
		"0,,1":  `--gpus "0,,1": an empty item`,
		"0,1,":  `--gpus "0,1,": an empty item`,
		"0,x":   `"x" is not a device number`,
		"+1":    `"+1" is not a device number`,
		"00":    `"00" is not a device number`,
		"1-2":   `"1-2" is not a device number`,
		"-1":    "device -1 is negative",
		"2,0,2": "device 2 is listed twice",
	} {
		if _, err := ParseDevices(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDevices(%q): %v, want %q", s, err, want)
		}
	}
}

// TestNoSuchDevice: a device number the machine lacks is told apart from a
// backend that cannot start (auto falls back to the CPU only for the
// latter), through wrapping, and says which numbers exist.
func TestNoSuchDevice(t *testing.T) {
	err := fmt.Errorf("device 3: %w", &cuda.NoDeviceError{Device: 3, Present: 2})
	if !NoSuchDevice(err) || !strings.Contains(err.Error(), "no device 3 (2 present, numbered 0 to 1)") {
		t.Errorf("%v: NoSuchDevice %v", err, NoSuchDevice(err))
	}
	if e := (&cuda.NoDeviceError{Device: 0}); !strings.Contains(e.Error(), "sees no GPU") {
		t.Errorf("no GPU at all: %v", e)
	}
	for _, err := range []error{nil, errors.New("cuda: no CUDA driver"), fmt.Errorf("x: %w", errors.New("device 3"))} {
		if NoSuchDevice(err) || BadDeviceList(err) {
			t.Errorf("NoSuchDevice(%v) or BadDeviceList = true", err)
		}
	}
	if !BadDeviceList(err) || !BadDeviceList(&listError{"--gpus: Metal runs on one GPU (asked for 2)"}) {
		t.Error("BadDeviceList misses a device the machine lacks or several on Metal")
	}
}
