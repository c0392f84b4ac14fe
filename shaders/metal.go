package shaders

import (
	_ "embed"
	"strings"
)

//go:embed prelude_metal.h
var preludeMetal string

// Metal is the complete Metal Shading Language source: the Metal prelude
// (which includes <metal_stdlib>) followed by the same bodies as CUDA. The
// Metal backend compiles it with newLibraryWithSource:options:error:.
func Metal() string {
	return preludeMetal + "\n" + strings.Join(Bodies(), "\n")
}

// PreludeCUDA and PreludeMetal are the two preludes alone, for the tests
// that check they define the same dialect.
func PreludeCUDA() string  { return preludeCUDA }
func PreludeMetal() string { return preludeMetal }
