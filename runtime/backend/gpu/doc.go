// Package gpu is the host side that the GPU backends (cuda, metal) share:
// both run the same kernel bodies (package shaders), so what to check, which
// kernel to launch, with which grid, block, shared memory and parameters is
// decided once, here, by Ops. A backend supplies a Device: its buffers and
// weights resolved to device addresses, host-to-device staging, and the
// translation of a Launch into its own API call (cuLaunchKernel, a Metal
// compute encoder). What differs between the devices for a real reason
// (shared-memory size, per-pipeline thread limits, gridDim.y, how many
// blocks fill the GPU) is a Limits value, not a branch.
package gpu
