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
	imageCache = map[string]*image{} // compiled module per cache key, per process
)

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
// major.minor: from this process's cache, the disk cache, or NVRTC.
func moduleImage(major, minor int, dir string) (*image, error) {
	if err := loadNVRTC(); err != nil {
		return nil, err
	}
	src := shaders.CUDA()
	cc := fmt.Sprintf("%d%d", major, minor)
	h := sha256.Sum256([]byte(src + "\x00sm_" + cc + "\x00nvrtc " + nvrtcVer))
	key := hex.EncodeToString(h[:12])

	imageMu.Lock()
	defer imageMu.Unlock()
	if im := imageCache[key]; im != nil {
		return im, nil
	}
	dir = cacheDir(dir)
	for _, ext := range []string{".cubin", ".ptx"} {
		if dir == "" {
			break
		}
		if b, err := os.ReadFile(filepath.Join(dir, key+ext)); err == nil && len(b) > 0 {
			im := &image{data: b, desc: fmt.Sprintf("sm_%s %s, NVRTC %s, cached", cc, ext[1:], nvrtcVer)}
			imageCache[key] = im
			return im, nil
		}
	}
	im, ext, err := compile(src, cc)
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
	imageCache[key] = im
	return im, nil
}

// compile runs NVRTC for the card's real architecture (a cubin); if this
// NVRTC does not know it, for the newest virtual architecture it accepts
// at or below the card's (PTX, which the driver compiles forward).
func compile(src, cc string) (*image, string, error) {
	out, err := nvrtc(src, "--gpu-architecture=sm_"+cc, true)
	if err == nil {
		return &image{data: out, desc: fmt.Sprintf("sm_%s cubin, NVRTC %s", cc, nvrtcVer)}, ".cubin", nil
	}
	first := err
	have, _ := strconv.Atoi(cc)
	for _, v := range []string{cc, "120", "100", "90", "89", "86", "80", "75"} {
		if n, _ := strconv.Atoi(v); n > have {
			continue
		}
		out, err := nvrtc(src, "--gpu-architecture=compute_"+v, false)
		if err == nil {
			out = append(out, 0)
			return &image{data: out, desc: fmt.Sprintf("compute_%s PTX, NVRTC %s", v, nvrtcVer)}, ".ptx", nil
		}
	}
	return nil, "", first
}

func nvrtc(src, arch string, cubin bool) ([]byte, error) {
	opts := []string{arch, "--std=c++17", "-DFMOE_CUDA=1"}
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
		msg := fmt.Sprintf("cuda: NVRTC (%s, %s): %s", nvrtcPath, arch, C.GoString(C.fm_nvrtc_error(r)))
		if logs != "" {
			msg += "\n" + logs
		}
		return nil, errors.New(msg)
	}
	b := C.GoBytes(unsafe.Pointer(out), C.int(n))
	C.free(unsafe.Pointer(out))
	return b, nil
}
