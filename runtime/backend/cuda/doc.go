// Package cuda is the NVIDIA GPU implementation of backend.Backend.
//
// It builds without a CUDA SDK: the driver library (libcuda.so.1) and NVRTC
// are opened with dlopen at run time, so one binary runs on machines with
// and without a GPU, and New returns an error (never panics) where there is
// no driver, no device or no NVRTC, for the caller to fall back to the CPU.
//
// The kernels are CUDA C source embedded from package shaders, compiled by
// NVRTC for the card's architecture on first use and cached under
// os.UserCacheDir()/fmoe/cuda, keyed by a hash of the source, the
// architecture and the NVRTC version.
//
// Buffers and resident weights live in device memory. Bind copies a routed
// expert from host memory to a reusable device slot on a second stream, so
// that the copy of the next expert overlaps the compute of the current one;
// the copy is a pure DMA when the host bytes come from HostAlloc (pinned
// memory), otherwise it goes through a ring of pinned staging chunks.
// Every op is asynchronous on one compute stream; Read waits for it.
package cuda
