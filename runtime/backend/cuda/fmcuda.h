// fmcuda.h: the few CUDA driver API and NVRTC declarations the backend
// uses, so that it builds without a CUDA SDK. Both libraries are loaded
// with dlopen at run time; every call goes through a pointer from dlsym.
// Calls that need a context take it first and make it current on the
// calling OS thread, because a goroutine may move between threads.
#ifndef FMCUDA_H
#define FMCUDA_H

#include <stddef.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

int fm_load_driver(char *err, int errlen);
int fm_load_nvrtc(const char *path, char *err, int errlen);
const char *fm_error_name(CUresult r);
const char *fm_error_string(CUresult r);

CUresult fm_init(void);
CUresult fm_driver_version(int *v);
CUresult fm_device_count(int *n);
CUresult fm_device_get(CUdevice *d, int ordinal);
CUresult fm_device_name(char *name, int len, CUdevice d);
CUresult fm_device_attr(int *v, int attr, CUdevice d);
CUresult fm_device_total_mem(size_t *bytes, CUdevice d);
CUresult fm_ctx_retain(CUcontext *c, CUdevice d);
CUresult fm_ctx_release(CUdevice d);

CUresult fm_module_load(CUcontext c, CUmodule *m, const void *image);
CUresult fm_module_unload(CUcontext c, CUmodule m);
CUresult fm_module_function(CUcontext c, CUfunction *f, CUmodule m, const char *name);
CUresult fm_func_set_attr(CUcontext c, CUfunction f, int attr, int v);
CUresult fm_func_get_attr(CUcontext c, int *v, int attr, CUfunction f);

CUresult fm_mem_alloc(CUcontext c, CUdeviceptr *p, size_t n);
CUresult fm_mem_free(CUcontext c, CUdeviceptr p);
CUresult fm_mem_info(CUcontext c, size_t *free, size_t *total);
CUresult fm_host_alloc(CUcontext c, void **p, size_t n);
CUresult fm_host_free(CUcontext c, void *p);
CUresult fm_host_alloc_huge(CUcontext c, void **p, size_t n);
CUresult fm_host_free_huge(CUcontext c, void *p, size_t n);
CUresult fm_htod(CUcontext c, CUdeviceptr dst, const void *src, size_t n, CUstream s);
CUresult fm_dtoh(CUcontext c, void *dst, CUdeviceptr src, size_t n, CUstream s);
CUresult fm_dtoh_async(CUcontext c, void *dst, CUdeviceptr src, size_t n, CUstream s);
CUresult fm_dtod(CUcontext c, CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s);
CUresult fm_memset32(CUcontext c, CUdeviceptr dst, unsigned v, size_t n, CUstream s);

CUresult fm_stream_create(CUcontext c, CUstream *s);
CUresult fm_stream_destroy(CUcontext c, CUstream s);
CUresult fm_stream_sync(CUcontext c, CUstream s);
CUresult fm_stream_query(CUcontext c, CUstream s);
CUresult fm_stream_wait(CUcontext c, CUstream s, CUevent e);
CUresult fm_event_create(CUcontext c, CUevent *e, unsigned flags);
CUresult fm_event_destroy(CUcontext c, CUevent e);
CUresult fm_event_record(CUcontext c, CUevent e, CUstream s);
CUresult fm_event_sync(CUcontext c, CUevent e);
// fm_event_query: CUDA_SUCCESS when e has completed, CUDA_ERROR_NOT_READY (600) while not.
CUresult fm_event_query(CUcontext c, CUevent e);
CUresult fm_event_elapsed(CUcontext c, float *ms, CUevent a, CUevent b);

// fm_launch launches f with the n kernel arguments packed in args at byte
// offsets offs (the driver copies them before returning).
CUresult fm_launch(CUcontext c, CUfunction f, unsigned gx, unsigned gy, unsigned bx, unsigned shmem, CUstream s,
                   void *args, const int *offs, int n, int pdl);
/* 1 when the driver has cuLaunchKernelEx, which fm_launch's pdl needs
   (without it pdl is ignored). */
int fm_has_launch_ex(void);

// CUDA graphs (stream capture). The driver symbols are optional: where
// they are missing fm_has_graphs is 0 and the backend runs ops one by one.
int fm_has_graphs(void);
CUresult fm_capture_begin(CUcontext c, CUstream s);
// fm_capture_end ends the capture on s and instantiates what it recorded
// into *exec (the graph itself is destroyed).
CUresult fm_capture_end(CUcontext c, CUstream s, CUgraphExec *exec);
CUresult fm_graph_launch(CUcontext c, CUgraphExec g, CUstream s);
CUresult fm_graph_destroy(CUcontext c, CUgraphExec g);
// fm_func_name is f's name, or NULL where the driver cannot say (before CUDA 12.3).
const char *fm_func_name(CUfunction f);

int fm_nvrtc_version(int *major, int *minor);
// fm_nvrtc_compile compiles src; on success *out (malloc'd, *outlen bytes)
// is a cubin if cubin != 0, else PTX. *log (malloc'd, may be NULL) holds the
// compiler's log either way. The caller frees both.
int fm_nvrtc_compile(const char *src, const char *const *opts, int nopts, int cubin, char **out, size_t *outlen,
                     char **log);
const char *fm_nvrtc_error(int r);

#endif
