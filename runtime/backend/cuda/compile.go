//go:build linux && cgo

package cuda

/*
#include <stdlib.h>
#include "fmcuda.h"
*/
import "C"

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/fmoe/fmoe/shaders"
)

var (
	nvrtcOnce sync.Once
	nvrtcErr  error
	nvrtcPath string
	nvrtcVer  string

	imageMu    sync.Mutex
	imageCache = map[string]*imageSlot{} // compiled module per cache key, per process
)

// imageSlot is one cache key's module, loaded or compiled once; keys
// compile concurrently (NVRTC compiles separate programs in parallel).
type imageSlot struct {
	once sync.Once
	im   *image
	err  error
}

// image is a compiled kernel module: a cubin, or PTX the driver compiles.
type image struct {
	data []byte // NUL-terminated when PTX
	desc string // e.g. "sm_90 cubin, NVRTC 13.0"
}

// nvrtcCandidates lists where NVRTC may be: FMOE_NVRTC first, then the
// dynamic loader's search path, then CUDA installs.
func nvrtcCandidates() []string {
	var c []string
	if p := os.Getenv("FMOE_NVRTC"); p != "" {
		c = append(c, p)
	}
	c = append(c, "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12")
	for _, pat := range []string{"/usr/local/cuda*/lib64/libnvrtc.so*", "/usr/local/cuda*/targets/*/lib/libnvrtc.so*",
		"/usr/lib/x86_64-linux-gnu/libnvrtc.so*", "/usr/lib64/libnvrtc.so*"} {
		m, _ := filepath.Glob(pat)
		// Newest first: "cuda-13.0" sorts after "cuda-12.8".
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		c = append(c, m...)
	}
	return c
}

func loadNVRTC() error {
	nvrtcOnce.Do(func() {
		var tried []string
		for _, p := range nvrtcCandidates() {
			cp := C.CString(p)
			var buf [512]C.char
			ok := C.fm_load_nvrtc(cp, &buf[0], C.int(len(buf))) == 0
			C.free(unsafe.Pointer(cp))
			if ok {
				nvrtcPath = p
				var major, minor C.int
				C.fm_nvrtc_version(&major, &minor)
				nvrtcVer = fmt.Sprintf("%d.%d", int(major), int(minor))
				return
			}
			tried = append(tried, p)
		}
		nvrtcErr = fmt.Errorf("cuda: NVRTC not found (set FMOE_NVRTC to libnvrtc.so's path); tried %s",
			strings.Join(tried, ", "))
	})
	return nvrtcErr
}

// cacheDir is where compiled modules are kept between runs; "" disables
// the disk cache.
func cacheDir(override string) string {
	if override != "" {
		return override
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "fmoe", "cuda")
}

// moduleImage returns the kernels compiled for compute capability
// major.minor with the extra -D options defs: from this process's cache,
// the disk cache, or NVRTC. The cache key covers the options, so modules
// compiled with other matvec settings are never confused.
func moduleImage(major, minor int, dir string, defs []string) (*image, error) {
	if err := loadNVRTC(); err != nil {
		return nil, err
	}
	src := shaders.CUDA()
	cc := fmt.Sprintf("%d%d", major, minor)
	key := imageKey(src, cc, nvrtcVer, defs)

	imageMu.Lock()
	slot := imageCache[key]
	if slot == nil {
		slot = &imageSlot{}
		imageCache[key] = slot
	}
	imageMu.Unlock()
	slot.once.Do(func() { slot.im, slot.err = loadImage(src, cc, key, cacheDir(dir), defs) })
	if slot.err != nil {
		imageMu.Lock()
		if imageCache[key] == slot {
			delete(imageCache, key) // the next call tries again
		}
		imageMu.Unlock()
	}
	return slot.im, slot.err
}

// imageKey names a module by everything that shapes it: the source, the
// architecture, the NVRTC version and the -D options.
func imageKey(src, cc, ver string, defs []string) string {
	h := sha256.Sum256([]byte(src + "\x00sm_" + cc + "\x00nvrtc " + ver + "\x00" + strings.Join(defs, "\x00")))
	return hex.EncodeToString(h[:12])
}

// loadImage reads key's module from the disk cache dir, or compiles it
// there.
func loadImage(src, cc, key, dir string, defs []string) (*image, error) {
	for _, ext := range []string{".cubin", ".ptx"} {
		if dir == "" {
			break
		}
		if b, err := os.ReadFile(filepath.Join(dir, key+ext)); err == nil && len(b) > 0 {
			return &image{data: b, desc: fmt.Sprintf("sm_%s %s, NVRTC %s, cached", cc, ext[1:], nvrtcVer)}, nil
		}
	}
	im, ext, err := compile(src, cc, defs)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		// Best effort: a read-only cache only costs a compile per run.
		if os.MkdirAll(dir, 0o755) == nil {
			tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", key, os.Getpid()))
			if os.WriteFile(tmp, im.data, 0o644) == nil {
				if os.Rename(tmp, filepath.Join(dir, key+ext)) != nil {
					os.Remove(tmp)
				}
			}
		}
	}
	return im, nil
}

// compile runs NVRTC for the card's real architecture (a cubin); if this
// NVRTC does not know it, for the newest virtual architecture it accepts
// at or below the card's (PTX, which the driver compiles forward).
func compile(src, cc string, defs []string) (*image, string, error) {
	out, err := nvrtc(src, "--gpu-architecture=sm_"+cc, true, defs)
	if err == nil {
		return &image{data: out, desc: fmt.Sprintf("sm_%s cubin, NVRTC %s", cc, nvrtcVer)}, ".cubin", nil
	}
	first := err
	have, _ := strconv.Atoi(cc)
	for _, v := range []string{cc, "120", "100", "90", "89", "86", "80", "75"} {
		if n, _ := strconv.Atoi(v); n > have {
			continue
		}
		out, err := nvrtc(src, "--gpu-architecture=compute_"+v, false, defs)
		if err == nil {
			out = append(out, 0)
			return &image{data: out, desc: fmt.Sprintf("compute_%s PTX, NVRTC %s", v, nvrtcVer)}, ".ptx", nil
		}
	}
	return nil, "", first
}

func nvrtc(src, arch string, cubin bool, defs []string) ([]byte, error) {
	opts := append([]string{arch, "--std=c++17", "-DFMOE_CUDA=1"}, defs...)
	copts := make([]*C.char, len(opts))
	for i, o := range opts {
		copts[i] = C.CString(o)
	}
	csrc := C.CString(src)
	defer func() {
		C.free(unsafe.Pointer(csrc))
		for _, p := range copts {
			C.free(unsafe.Pointer(p))
		}
	}()
	var out, log *C.char
	var n C.size_t
	wantCubin := C.int(0)
	if cubin {
		wantCubin = 1
	}
	r := C.fm_nvrtc_compile(csrc, &copts[0], C.int(len(copts)), wantCubin, &out, &n, &log)
	var logs string
	if log != nil {
		logs = strings.TrimSpace(C.GoString(log))
		C.free(unsafe.Pointer(log))
	}
	if r != 0 {
		if out != nil {
			C.free(unsafe.Pointer(out))
		}
		msg := fmt.Sprintf("cuda: NVRTC (%s, %s %s): %s", nvrtcPath, arch, strings.Join(defs, " "), C.GoString(C.fm_nvrtc_error(r)))
		if logs != "" {
			msg += "\n" + logs
		}
		return nil, errors.New(msg)
	}
	if logs != "" && os.Getenv("FMOE_NVRTC_LOG") == "1" {
		// FMOE_NVRTC_LOG=1: the log of a compile that succeeded (its
		// warnings; with --ptxas-options=-v among defs, as
		// TestMMVRegisters passes it, each kernel's registers and spills).
		fmt.Fprintf(os.Stderr, "cuda: NVRTC (%s %s):\n%s\n", arch, strings.Join(defs, " "), logs)
	}
	b := C.GoBytes(unsafe.Pointer(out), C.int(n))
	C.free(unsafe.Pointer(out))
	return b, nil
}
