package shaders

import (
	"regexp"
	"strings"
	"testing"
)

// kernelStart finds a kernel's declaration in the CUDA translation unit:
// the dialect's KERNEL(name) / MV_KERNEL(name), or a CUDA-only
// extern "C" __global__, inside a macro or not.
var kernelStart = regexp.MustCompile(`(?m)(^\s*(KERNEL|MV_KERNEL)\(\w+\)\(|extern "C" __global__ void)`)

// firstStatements returns, for every kernel declared in src, the text of
// its body from the opening brace on (continuation backslashes and
// DYN_SHARED / XSM declarations removed), with a name to report it by.
func firstStatements(src string) map[string]string {
	out := map[string]string{}
	for _, loc := range kernelStart.FindAllStringIndex(src, -1) {
		if line := src[strings.LastIndexByte(src[:loc[0]], '\n')+1:]; strings.HasPrefix(strings.TrimSpace(line), "#define") {
			continue // the dialect's own #define KERNEL(name)
		}
		open := strings.IndexByte(src[loc[1]:], '{')
		if open < 0 {
			continue
		}
		decl := src[loc[0] : loc[1]+open]
		body := strings.ReplaceAll(src[loc[1]+open+1:], "\\\n", "\n")
		body = strings.TrimSpace(body)
		for strings.HasPrefix(body, "DYN_SHARED(") || strings.HasPrefix(body, "XSM(") {
			body = strings.TrimSpace(body[strings.IndexByte(body, '\n')+1:])
		}
		if len(body) > 60 {
			body = body[:60]
		}
		out[strings.Join(strings.Fields(decl), " ")] = body
	}
	return out
}

// Programmatic dependent launch (runtime/backend/cuda, Options.NoPDL) is
// correct only if every kernel waits for the kernel before it before it
// reads or writes memory: a kernel without GRID_WAIT first could read a
// buffer its predecessor is still writing.
func TestEveryKernelWaitsFirst(t *testing.T) {
	src := CUDA()
	starts := firstStatements(src)
	// Every entry point the module exports must be among those checked:
	// count the kernels the preprocessor will make from the macros.
	if len(starts) < 25 {
		t.Fatalf("found only %d kernel declarations: the scan is broken", len(starts))
	}
	for decl, body := range starts {
		if !strings.HasPrefix(body, "GRID_WAIT();") {
			t.Errorf("kernel %q begins with %q, want GRID_WAIT(); first", decl, body)
		}
	}
	if !strings.Contains(src, "griddepcontrol.wait") {
		t.Error("the CUDA prelude lost GRID_WAIT's griddepcontrol.wait")
	}
}

// The scan itself must see a kernel that does not wait.
func TestGridWaitScanCatches(t *testing.T) {
	src := "KERNEL(k)(PARAM_PTR(float, y, 0) KERNEL_IDS) {\n    y[0] = 1;\n}\n" +
		"#define M(name) \\\n    extern \"C\" __global__ void name(float* y) { \\\n        GRID_WAIT(); \\\n        y[0] = 2; \\\n    }\n"
	starts := firstStatements(src)
	if len(starts) != 2 {
		t.Fatalf("found %d kernels, want 2: %v", len(starts), starts)
	}
	bad := 0
	for _, body := range starts {
		if !strings.HasPrefix(body, "GRID_WAIT();") {
			bad++
		}
	}
	if bad != 1 {
		t.Fatalf("%d kernels flagged, want the one without GRID_WAIT: %v", bad, starts)
	}
}
