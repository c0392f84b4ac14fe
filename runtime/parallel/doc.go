// Package parallel is expert parallelism over several devices of one host:
// the placement of each layer's routed experts on the devices (Partition,
// balanced by measured load) and the exchange of the hidden state between
// them (Collective: an in-process stand-in over several backends, and NCCL
// loaded at run time). The model's MoE block (runtime/model) uses both;
// docs/scaling.md gives the design and its numbers.
package parallel
