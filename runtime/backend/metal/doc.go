// Package metal is the Apple-GPU implementation of backend.Backend, for
// macOS on Apple Silicon.
//
// The kernels are the shared-dialect bodies of package shaders behind
// shaders/prelude_metal.h, compiled at run time with
// newLibraryWithSource:options:error: (fast math off), as flash-moe does.
// Memory is unified, so nothing is copied that need not be: MapHost wraps
// the mmapped model_weights.bin as one no-copy buffer and weights
// registered from it are used in place; HostAlloc returns page-aligned
// memory, also wrapped no-copy, for the pread of routed experts, so Bind of
// an expert read there is free. Other weights are copied once.
//
// Ops are encoded into one command buffer (one compute encoder) that is
// committed at the next synchronising call — Read, Write, Sync, Release of
// an in-place expert — and then waited for: Metal runs command buffers of a
// queue in order, and the seed measured serial I/O and compute best on
// unified memory.
//
// Everything except the Objective-C bridge (fmmetal.m, darwin/arm64 with
// cgo) is ordinary Go behind the small device interface, which the tests
// drive on any OS with a CPU simulator of the same kernels
// (shaders/mock/metalsim.cc); see docs/metal.md for what that proves.
package metal
