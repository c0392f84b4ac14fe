package main

import (
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

func newCPUBackend(threads int) (backend.Backend, error) {
	return cpu.New(cpu.Options{Threads: threads}), nil
}
