//go:build !amd64 || purego

package cpu

import "github.com/fmoe/fmoe/runtime/backend"

const haveAsm = false

func asmKernel(w *backend.Weight) kernel { return nil }
