package backends

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
	"github.com/fmoe/fmoe/runtime/backend/metal"
	"github.com/fmoe/fmoe/runtime/parallel"
)

// OpenDevices opens the named backend on each device of ids (all visible
// devices when ids is empty: every CUDA device, one elsewhere) and the
// collective that joins them, for expert parallelism (runtime/parallel):
// NCCL between CUDA devices, or host memory, said on o.Log, where NCCL is
// missing; on the CPU each id is a logical device, a CPU backend of its own
// (the in-process stand-in). Metal has one device. The first backend is
// rank 0. On error nothing stays open.
func OpenDevices(name string, ids []int, o Options) (bes []backend.Backend, coll parallel.Collective, err error) {
	defer func() {
		if err != nil {
			for _, be := range bes {
				be.Close()
			}
			bes = nil
		}
	}()
	if err := checkIDs(ids); err != nil {
		return nil, nil, err
	}
	first := 0
	if len(ids) > 0 {
		first = ids[0]
	}
	o0 := o
	o0.Device = first
	be, err := Open(name, o0)
	if err != nil {
		return nil, nil, err
	}
	bes = append(bes, be)
	kind := kindOf(be)
	if len(ids) == 0 && kind == "cuda" {
		n, err := cuda.DeviceCount()
		if err != nil {
			return bes, nil, err
		}
		for i := range n {
			ids = append(ids, i)
		}
	}
	if len(ids) <= 1 {
		c, err := parallel.NewLocal(bes)
		return bes, c, err
	}
	if kind == "metal" {
		return bes, nil, &listError{fmt.Sprintf("--gpus: Metal runs on one GPU (asked for %d)", len(ids))}
	}
	for _, id := range ids[1:] {
		oi := o
		oi.Device, oi.Log = id, nil
		be, err := Open(kind, oi)
		if err != nil {
			return bes, nil, fmt.Errorf("device %d: %w", id, err)
		}
		bes = append(bes, be)
	}
	return bes, joinDevices(kind, bes, o), nil
}

// joinDevices is NCCL between CUDA devices where it loads, else the
// in-process collective through host memory, saying so on o.Log.
func joinDevices(kind string, bes []backend.Backend, o Options) parallel.Collective {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if kind == "cuda" {
		c, err := parallel.NewNCCL(bes)
		if err == nil {
			logf("exchange: NCCL between %d GPUs", len(bes))
			return c
		}
		logf("exchange: through host memory (%v)", err)
	} else {
		logf("exchange: %d logical %s devices in one process", len(bes), kind)
	}
	c, _ := parallel.NewLocal(bes) // bes is not empty
	return c
}

// kindOf is the backend name Open takes for be (auto resolved).
func kindOf(be backend.Backend) string {
	switch be.(type) {
	case *cuda.Backend:
		return "cuda"
	case *metal.Backend:
		return "metal"
	}
	return "cpu"
}

func checkIDs(ids []int) error {
	seen := map[int]bool{}
	for _, id := range ids {
		if id < 0 {
			return fmt.Errorf("--gpus: device %d is negative", id)
		}
		if seen[id] {
			return fmt.Errorf("--gpus: device %d is listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// ParseDevices reads a --gpus list: comma-separated device numbers ("0,1"),
// or "" or "all" for every visible device.
func ParseDevices(s string) ([]int, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	var ids []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		id, err := strconv.Atoi(f)
		if err != nil || strconv.Itoa(id) != f {
			what := fmt.Sprintf("%q is not a device number", f)
			if f == "" {
				what = "an empty item"
			}
			return nil, fmt.Errorf("--gpus %q: %s (want device numbers separated by commas, such as 0,1, or all)", s, what)
		}
		ids = append(ids, id)
	}
	return ids, checkIDs(ids)
}

// listError is a --gpus list the machine cannot honour (BadDeviceList).
type listError struct{ msg string }

func (e *listError) Error() string { return e.msg }
