//go:build linux && cgo

#include "fmcuda.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NOT_LOADED 999 /* CUDA_ERROR_UNKNOWN: a symbol was not resolved */

static CUresult (*p_cuInit)(unsigned);
static CUresult (*p_cuDriverGetVersion)(int *);
static CUresult (*p_cuDeviceGetCount)(int *);
static CUresult (*p_cuDeviceGet)(CUdevice *, int);
static CUresult (*p_cuDeviceGetName)(char *, int, CUdevice);
static CUresult (*p_cuDeviceGetAttribute)(int *, int, CUdevice);
static CUresult (*p_cuDeviceTotalMem)(size_t *, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRelease)(CUdevice);
static CUresult (*p_cuCtxSetCurrent)(CUcontext);
static CUresult (*p_cuModuleLoadData)(CUmodule *, const void *);
static CUresult (*p_cuModuleUnload)(CUmodule);
static CUresult (*p_cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*p_cuFuncSetAttribute)(CUfunction, int, int);
static CUresult (*p_cuFuncGetAttribute)(int *, int, CUfunction);
static CUresult (*p_cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemFree)(CUdeviceptr);
static CUresult (*p_cuMemGetInfo)(size_t *, size_t *);
static CUresult (*p_cuMemHostAlloc)(void **, size_t, unsigned);
static CUresult (*p_cuMemFreeHost)(void *);
static CUresult (*p_cuMemHostRegister)(void *, size_t, unsigned);
static CUresult (*p_cuMemHostUnregister)(void *);
static CUresult (*p_cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
static CUresult (*p_cuStreamCreate)(CUstream *, unsigned);
static CUresult (*p_cuStreamDestroy)(CUstream);
static CUresult (*p_cuStreamSynchronize)(CUstream);
static CUresult (*p_cuStreamQuery)(CUstream);
static CUresult (*p_cuStreamWaitEvent)(CUstream, CUevent, unsigned);
static CUresult (*p_cuEventCreate)(CUevent *, unsigned);
static CUresult (*p_cuEventDestroy)(CUevent);
static CUresult (*p_cuEventRecord)(CUevent, CUstream);
static CUresult (*p_cuEventSynchronize)(CUevent);
static CUresult (*p_cuEventQuery)(CUevent);
static CUresult (*p_cuEventElapsedTime)(float *, CUevent, CUevent);
static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                    CUstream, void **, void **);
/* cuLaunchKernelEx's launch configuration (cuda.h, CUDA 12.0+), for the
   programmatic dependent launch attribute alone. */
typedef struct {
    int id;
    char pad_[4];
    union {
        char pad[64];
        int programmaticStreamSerializationAllowed;
    } value;
} fm_launch_attr;
typedef struct {
    unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
    CUstream hStream;
    fm_launch_attr *attrs;
    unsigned numAttrs;
} fm_launch_config;
#define FM_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION 6
static CUresult (*p_cuLaunchKernelEx)(const fm_launch_config *, CUfunction, void **, void **);
static CUresult (*p_cuStreamBeginCapture)(CUstream, int);
static CUresult (*p_cuStreamEndCapture)(CUstream, CUgraph *);
static CUresult (*p_cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
static CUresult (*p_cuGraphLaunch)(CUgraphExec, CUstream);
static CUresult (*p_cuFuncGetName)(const char **, CUfunction);
static CUresult (*p_cuGraphExecDestroy)(CUgraphExec);
static CUresult (*p_cuGraphDestroy)(CUgraph);
static CUresult (*p_cuGetErrorName)(CUresult, const char **);
static CUresult (*p_cuGetErrorString)(CUresult, const char **);

typedef struct nvrtcProgram_st *nvrtcProgram;
static int (*p_nvrtcVersion)(int *, int *);
static int (*p_nvrtcCreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                                   const char *const *);
static int (*p_nvrtcCompileProgram)(nvrtcProgram, int, const char *const *);
static int (*p_nvrtcGetProgramLogSize)(nvrtcProgram, size_t *);
static int (*p_nvrtcGetProgramLog)(nvrtcProgram, char *);
static int (*p_nvrtcGetCUBINSize)(nvrtcProgram, size_t *);
static int (*p_nvrtcGetCUBIN)(nvrtcProgram, char *);
static int (*p_nvrtcGetPTXSize)(nvrtcProgram, size_t *);
static int (*p_nvrtcGetPTX)(nvrtcProgram, char *);
static int (*p_nvrtcDestroyProgram)(nvrtcProgram *);
static const char *(*p_nvrtcGetErrorString)(int);

static void *libcuda, *libnvrtc;

// sym resolves the first of up to two names (a versioned _v2 export, then
// the plain one); it reports the missing name in err.
static int sym(void *lib, void **dst, const char *a, const char *b, char *err, int errlen) {
    *dst = dlsym(lib, a);
    if (!*dst && b) *dst = dlsym(lib, b);
    if (!*dst) {
        snprintf(err, errlen, "symbol %s not found", a);
        return -1;
    }
    return 0;
}

#define SYM(lib, p, a, b)                                          \
    if (sym(lib, (void **)&p, a, b, err, errlen) != 0) return -1;

int fm_load_driver(char *err, int errlen) {
    if (libcuda) return 0;
    void *l = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!l) {
        const char *e = dlerror();
        snprintf(err, errlen, "%s", e ? e : "dlopen libcuda.so.1 failed");
        l = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
        if (!l) return -1;
    }
    SYM(l, p_cuInit, "cuInit", NULL);
    SYM(l, p_cuDriverGetVersion, "cuDriverGetVersion", NULL);
    SYM(l, p_cuDeviceGetCount, "cuDeviceGetCount", NULL);
    SYM(l, p_cuDeviceGet, "cuDeviceGet", NULL);
    SYM(l, p_cuDeviceGetName, "cuDeviceGetName", NULL);
    SYM(l, p_cuDeviceGetAttribute, "cuDeviceGetAttribute", NULL);
    SYM(l, p_cuDeviceTotalMem, "cuDeviceTotalMem_v2", "cuDeviceTotalMem");
    SYM(l, p_cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", NULL);
    SYM(l, p_cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
    SYM(l, p_cuCtxSetCurrent, "cuCtxSetCurrent", NULL);
    SYM(l, p_cuModuleLoadData, "cuModuleLoadData", NULL);
    SYM(l, p_cuModuleUnload, "cuModuleUnload", NULL);
    SYM(l, p_cuModuleGetFunction, "cuModuleGetFunction", NULL);
    SYM(l, p_cuFuncSetAttribute, "cuFuncSetAttribute", NULL);
    SYM(l, p_cuFuncGetAttribute, "cuFuncGetAttribute", NULL);
    SYM(l, p_cuMemAlloc, "cuMemAlloc_v2", NULL);
    SYM(l, p_cuMemFree, "cuMemFree_v2", NULL);
    SYM(l, p_cuMemGetInfo, "cuMemGetInfo_v2", NULL);
    SYM(l, p_cuMemHostAlloc, "cuMemHostAlloc", NULL);
    SYM(l, p_cuMemFreeHost, "cuMemFreeHost", NULL);
    /* Optional (fm_host_alloc_huge): absent, HostAlloc keeps cuMemHostAlloc. */
    *(void **)&p_cuMemHostRegister = dlsym(l, "cuMemHostRegister_v2");
    if (!p_cuMemHostRegister) *(void **)&p_cuMemHostRegister = dlsym(l, "cuMemHostRegister");
    *(void **)&p_cuMemHostUnregister = dlsym(l, "cuMemHostUnregister");
    SYM(l, p_cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", NULL);
    SYM(l, p_cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", NULL);
    SYM(l, p_cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", NULL);
    SYM(l, p_cuMemsetD32Async, "cuMemsetD32Async", NULL);
    SYM(l, p_cuStreamCreate, "cuStreamCreate", NULL);
    SYM(l, p_cuStreamDestroy, "cuStreamDestroy_v2", "cuStreamDestroy");
    SYM(l, p_cuStreamSynchronize, "cuStreamSynchronize", NULL);
    SYM(l, p_cuStreamQuery, "cuStreamQuery", NULL);
    SYM(l, p_cuStreamWaitEvent, "cuStreamWaitEvent", NULL);
    SYM(l, p_cuEventCreate, "cuEventCreate", NULL);
    SYM(l, p_cuEventDestroy, "cuEventDestroy_v2", "cuEventDestroy");
    SYM(l, p_cuEventRecord, "cuEventRecord", NULL);
    SYM(l, p_cuEventSynchronize, "cuEventSynchronize", NULL);
    SYM(l, p_cuEventQuery, "cuEventQuery", NULL);
    SYM(l, p_cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime");
    SYM(l, p_cuLaunchKernel, "cuLaunchKernel", NULL);
    SYM(l, p_cuGetErrorName, "cuGetErrorName", NULL);
    SYM(l, p_cuGetErrorString, "cuGetErrorString", NULL);
    // Optional: graphs are a speed-up, not a requirement.
    *(void **)&p_cuStreamBeginCapture = dlsym(l, "cuStreamBeginCapture_v2");
    *(void **)&p_cuStreamEndCapture = dlsym(l, "cuStreamEndCapture");
    *(void **)&p_cuLaunchKernelEx = dlsym(l, "cuLaunchKernelEx");
    *(void **)&p_cuGraphInstantiateWithFlags = dlsym(l, "cuGraphInstantiateWithFlags");
    *(void **)&p_cuGraphLaunch = dlsym(l, "cuGraphLaunch");
    // Optional (CUDA 12.3+): names kernels in the launch profile.
    *(void **)&p_cuFuncGetName = dlsym(l, "cuFuncGetName");
    *(void **)&p_cuGraphExecDestroy = dlsym(l, "cuGraphExecDestroy");
    *(void **)&p_cuGraphDestroy = dlsym(l, "cuGraphDestroy");
    libcuda = l;
    return 0;
}

int fm_load_nvrtc(const char *path, char *err, int errlen) {
    if (libnvrtc) return 0;
    void *l = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!l) {
        const char *e = dlerror();
        snprintf(err, errlen, "%s", e ? e : "dlopen failed");
        return -1;
    }
    SYM(l, p_nvrtcVersion, "nvrtcVersion", NULL);
    SYM(l, p_nvrtcCreateProgram, "nvrtcCreateProgram", NULL);
    SYM(l, p_nvrtcCompileProgram, "nvrtcCompileProgram", NULL);
    SYM(l, p_nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize", NULL);
    SYM(l, p_nvrtcGetProgramLog, "nvrtcGetProgramLog", NULL);
    SYM(l, p_nvrtcGetCUBINSize, "nvrtcGetCUBINSize", NULL);
    SYM(l, p_nvrtcGetCUBIN, "nvrtcGetCUBIN", NULL);
    SYM(l, p_nvrtcGetPTXSize, "nvrtcGetPTXSize", NULL);
    SYM(l, p_nvrtcGetPTX, "nvrtcGetPTX", NULL);
    SYM(l, p_nvrtcDestroyProgram, "nvrtcDestroyProgram", NULL);
    SYM(l, p_nvrtcGetErrorString, "nvrtcGetErrorString", NULL);
    libnvrtc = l;
    return 0;
}

const char *fm_error_name(CUresult r) {
    const char *s = NULL;
    if (!p_cuGetErrorName || p_cuGetErrorName(r, &s) != 0 || !s) return "CUDA_ERROR_UNKNOWN_CODE";
    return s;
}

const char *fm_error_string(CUresult r) {
    const char *s = NULL;
    if (!p_cuGetErrorString || p_cuGetErrorString(r, &s) != 0 || !s) return "";
    return s;
}

#define CALL(p, ...) return p ? p(__VA_ARGS__) : NOT_LOADED
#define CTX_CALL(c, p, ...)                       \
    do {                                          \
        if (!p || !p_cuCtxSetCurrent) return NOT_LOADED; \
        CUresult r_ = p_cuCtxSetCurrent(c);       \
        if (r_ != 0) return r_;                   \
        return p(__VA_ARGS__);                    \
    } while (0)

CUresult fm_init(void) { CALL(p_cuInit, 0); }
CUresult fm_driver_version(int *v) { CALL(p_cuDriverGetVersion, v); }
CUresult fm_device_count(int *n) { CALL(p_cuDeviceGetCount, n); }
CUresult fm_device_get(CUdevice *d, int ordinal) { CALL(p_cuDeviceGet, d, ordinal); }
CUresult fm_device_name(char *name, int len, CUdevice d) { CALL(p_cuDeviceGetName, name, len, d); }
CUresult fm_device_attr(int *v, int attr, CUdevice d) { CALL(p_cuDeviceGetAttribute, v, attr, d); }
CUresult fm_device_total_mem(size_t *bytes, CUdevice d) { CALL(p_cuDeviceTotalMem, bytes, d); }
CUresult fm_ctx_retain(CUcontext *c, CUdevice d) { CALL(p_cuDevicePrimaryCtxRetain, c, d); }
CUresult fm_ctx_release(CUdevice d) { CALL(p_cuDevicePrimaryCtxRelease, d); }

CUresult fm_module_load(CUcontext c, CUmodule *m, const void *image) { CTX_CALL(c, p_cuModuleLoadData, m, image); }
CUresult fm_module_unload(CUcontext c, CUmodule m) { CTX_CALL(c, p_cuModuleUnload, m); }
CUresult fm_module_function(CUcontext c, CUfunction *f, CUmodule m, const char *name) {
    CTX_CALL(c, p_cuModuleGetFunction, f, m, name);
}
CUresult fm_func_set_attr(CUcontext c, CUfunction f, int attr, int v) { CTX_CALL(c, p_cuFuncSetAttribute, f, attr, v); }
CUresult fm_func_get_attr(CUcontext c, int *v, int attr, CUfunction f) { CTX_CALL(c, p_cuFuncGetAttribute, v, attr, f); }

CUresult fm_mem_alloc(CUcontext c, CUdeviceptr *p, size_t n) { CTX_CALL(c, p_cuMemAlloc, p, n); }
CUresult fm_mem_free(CUcontext c, CUdeviceptr p) { CTX_CALL(c, p_cuMemFree, p); }
CUresult fm_mem_info(CUcontext c, size_t *free, size_t *total) { CTX_CALL(c, p_cuMemGetInfo, free, total); }
CUresult fm_host_alloc(CUcontext c, void **p, size_t n) { CTX_CALL(c, p_cuMemHostAlloc, p, n, 1 /* PORTABLE */); }
CUresult fm_host_free(CUcontext c, void *p) { CTX_CALL(c, p_cuMemFreeHost, p); }

/* Pinned memory on transparent huge pages (the FMOE_CUDA_HOST_HUGE
   experiment): anonymous memory on 2 MiB boundaries, advised toward huge
   pages, then registered with the driver, where cuMemHostAlloc's pages are
   the driver's choice. The CPUs that compute a share of the experts from
   the host tier then walk 2 MiB pages, not 4 KiB ones. */
#define FM_HUGE ((size_t)2 << 20)
static size_t fm_huge_len(size_t n) { return (n + FM_HUGE - 1) / FM_HUGE * FM_HUGE; }

CUresult fm_host_alloc_huge(CUcontext c, void **p, size_t n) {
    if (!p_cuMemHostRegister || !p_cuMemHostUnregister || !p_cuCtxSetCurrent) return NOT_LOADED;
    size_t len = fm_huge_len(n);
    char *m = mmap(NULL, len + FM_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
    char *a = (char *)(((uintptr_t)m + FM_HUGE - 1) & ~(uintptr_t)(FM_HUGE - 1));
    if (a > m) munmap(m, (size_t)(a - m));
    if (m + len + FM_HUGE > a + len) munmap(a + len, (size_t)(m + len + FM_HUGE - (a + len)));
    madvise(a, len, MADV_HUGEPAGE); /* advice: without THP the pages stay small */
    CUresult r = p_cuCtxSetCurrent(c);
    if (r == 0) r = p_cuMemHostRegister(a, len, 1 /* PORTABLE */);
    if (r != 0) {
        munmap(a, len);
        return r;
    }
    *p = a;
    return 0;
}

CUresult fm_host_free_huge(CUcontext c, void *p, size_t n) {
    if (!p_cuMemHostUnregister || !p_cuCtxSetCurrent) return NOT_LOADED;
    CUresult r = p_cuCtxSetCurrent(c);
    if (r == 0) r = p_cuMemHostUnregister(p);
    munmap(p, fm_huge_len(n));
    return r;
}
CUresult fm_htod(CUcontext c, CUdeviceptr dst, const void *src, size_t n, CUstream s) {
    CTX_CALL(c, p_cuMemcpyHtoDAsync, dst, src, n, s);
}
CUresult fm_dtoh(CUcontext c, void *dst, CUdeviceptr src, size_t n, CUstream s) {
    if (!p_cuMemcpyDtoHAsync || !p_cuStreamSynchronize || !p_cuCtxSetCurrent) return NOT_LOADED;
    CUresult r = p_cuCtxSetCurrent(c);
    if (r == 0) r = p_cuMemcpyDtoHAsync(dst, src, n, s);
    if (r == 0) r = p_cuStreamSynchronize(s);
    return r;
}
CUresult fm_dtoh_async(CUcontext c, void *dst, CUdeviceptr src, size_t n, CUstream s) {
    CTX_CALL(c, p_cuMemcpyDtoHAsync, dst, src, n, s);
}
CUresult fm_dtod(CUcontext c, CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    CTX_CALL(c, p_cuMemcpyDtoDAsync, dst, src, n, s);
}
CUresult fm_memset32(CUcontext c, CUdeviceptr dst, unsigned v, size_t n, CUstream s) {
    CTX_CALL(c, p_cuMemsetD32Async, dst, v, n, s);
}

CUresult fm_stream_create(CUcontext c, CUstream *s) { CTX_CALL(c, p_cuStreamCreate, s, 1 /* NON_BLOCKING */); }
CUresult fm_stream_destroy(CUcontext c, CUstream s) { CTX_CALL(c, p_cuStreamDestroy, s); }
CUresult fm_stream_sync(CUcontext c, CUstream s) { CTX_CALL(c, p_cuStreamSynchronize, s); }
CUresult fm_stream_query(CUcontext c, CUstream s) { CTX_CALL(c, p_cuStreamQuery, s); }
CUresult fm_stream_wait(CUcontext c, CUstream s, CUevent e) { CTX_CALL(c, p_cuStreamWaitEvent, s, e, 0); }
CUresult fm_event_create(CUcontext c, CUevent *e, unsigned flags) { CTX_CALL(c, p_cuEventCreate, e, flags); }
CUresult fm_event_destroy(CUcontext c, CUevent e) { CTX_CALL(c, p_cuEventDestroy, e); }
CUresult fm_event_record(CUcontext c, CUevent e, CUstream s) { CTX_CALL(c, p_cuEventRecord, e, s); }
CUresult fm_event_sync(CUcontext c, CUevent e) { CTX_CALL(c, p_cuEventSynchronize, e); }
CUresult fm_event_query(CUcontext c, CUevent e) { CTX_CALL(c, p_cuEventQuery, e); }
CUresult fm_event_elapsed(CUcontext c, float *ms, CUevent a, CUevent b) { CTX_CALL(c, p_cuEventElapsedTime, ms, a, b); }

CUresult fm_launch(CUcontext c, CUfunction f, unsigned gx, unsigned gy, unsigned bx, unsigned shmem, CUstream s,
                   void *args, const int *offs, int n, int pdl) {
    void *params[32];
    if (n > 32) return 1; /* CUDA_ERROR_INVALID_VALUE */
    for (int i = 0; i < n; i++) params[i] = (char *)args + offs[i];
    if (pdl && p_cuLaunchKernelEx) {
        fm_launch_attr a;
        memset(&a, 0, sizeof a);
        a.id = FM_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        a.value.programmaticStreamSerializationAllowed = 1;
        fm_launch_config cfg = {gx, gy, 1, bx, 1, 1, shmem, s, &a, 1};
        CTX_CALL(c, p_cuLaunchKernelEx, &cfg, f, params, NULL);
    }
    CTX_CALL(c, p_cuLaunchKernel, f, gx, gy, 1, bx, 1, 1, shmem, s, params, NULL);
}

int fm_has_launch_ex(void) { return p_cuLaunchKernelEx != NULL; }

int fm_has_graphs(void) {
    return p_cuStreamBeginCapture && p_cuStreamEndCapture && p_cuGraphInstantiateWithFlags && p_cuGraphLaunch &&
           p_cuGraphExecDestroy && p_cuGraphDestroy;
}

/* CU_STREAM_CAPTURE_MODE_RELAXED: other threads may call the driver
   (allocations included) while the stream records. */
CUresult fm_capture_begin(CUcontext c, CUstream s) { CTX_CALL(c, p_cuStreamBeginCapture, s, 2); }

CUresult fm_capture_end(CUcontext c, CUstream s, CUgraphExec *exec) {
    if (!fm_has_graphs() || !p_cuCtxSetCurrent) return NOT_LOADED;
    CUresult r = p_cuCtxSetCurrent(c);
    if (r != 0) return r;
    CUgraph g = NULL;
    r = p_cuStreamEndCapture(s, &g);
    if (r != 0) return r;
    r = p_cuGraphInstantiateWithFlags(exec, g, 0);
    CUresult d = p_cuGraphDestroy(g);
    return r != 0 ? r : d;
}

CUresult fm_graph_launch(CUcontext c, CUgraphExec g, CUstream s) { CTX_CALL(c, p_cuGraphLaunch, g, s); }
CUresult fm_graph_destroy(CUcontext c, CUgraphExec g) { CTX_CALL(c, p_cuGraphExecDestroy, g); }

const char *fm_func_name(CUfunction f) {
    const char *name = NULL;
    if (!p_cuFuncGetName || p_cuFuncGetName(&name, f) != 0) return NULL;
    return name;
}

int fm_nvrtc_version(int *major, int *minor) {
    if (!p_nvrtcVersion) return NOT_LOADED;
    return p_nvrtcVersion(major, minor);
}

int fm_nvrtc_compile(const char *src, const char *const *opts, int nopts, int cubin, char **out, size_t *outlen,
                     char **log) {
    *out = NULL;
    *outlen = 0;
    *log = NULL;
    if (!p_nvrtcCreateProgram) return NOT_LOADED;
    nvrtcProgram prog;
    int r = p_nvrtcCreateProgram(&prog, src, "fmoe.cu", 0, NULL, NULL);
    if (r != 0) return r;
    r = p_nvrtcCompileProgram(prog, nopts, opts);
    size_t n = 0;
    if (p_nvrtcGetProgramLogSize(prog, &n) == 0 && n > 1) {
        *log = malloc(n);
        if (*log && p_nvrtcGetProgramLog(prog, *log) != 0) (*log)[0] = 0;
    }
    if (r == 0) {
        r = cubin ? p_nvrtcGetCUBINSize(prog, &n) : p_nvrtcGetPTXSize(prog, &n);
        if (r == 0) {
            *out = malloc(n);
            if (!*out) r = NOT_LOADED;
            else if ((r = cubin ? p_nvrtcGetCUBIN(prog, *out) : p_nvrtcGetPTX(prog, *out)) == 0) *outlen = n;
            else {
                free(*out);
                *out = NULL;
            }
        }
    }
    p_nvrtcDestroyProgram(&prog);
    return r;
}

const char *fm_nvrtc_error(int r) {
    if (!p_nvrtcGetErrorString) return "NVRTC not loaded";
    return p_nvrtcGetErrorString(r);
}
