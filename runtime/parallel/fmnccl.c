//go:build linux && cgo

#include "fmnccl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

// NCCL's ABI (nccl.h): ncclResult_t is an int enum, ncclSuccess 0;
// ncclFloat32 is 7 and ncclSum 0; ncclComm_t and cudaStream_t are pointers.
enum { NCCL_FLOAT32 = 7, NCCL_SUM = 0, NOT_LOADED = 3 /* ncclInternalError */ };

typedef void *comm_t;
typedef void *stream_t;

static int (*p_ncclGetVersion)(int *);
static int (*p_ncclCommInitAll)(comm_t *, int, const int *);
static int (*p_ncclCommDestroy)(comm_t);
static int (*p_ncclGroupStart)(void);
static int (*p_ncclGroupEnd)(void);
static int (*p_ncclAllReduce)(const void *, void *, size_t, int, int, comm_t, stream_t);
static int (*p_ncclBroadcast)(const void *, void *, size_t, int, int, comm_t, stream_t);
static const char *(*p_ncclGetErrorString)(int);

static void *lib;

int fm_nccl_load(char *err, int errlen) {
    if (lib) return 0;
    // NVLink SHARP (multicast, "NVLS") stays off: it needs cuMulticastCreate,
    // which the machines this runs on must not use. NCCL reads it at init.
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    void *l = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!l) {
        // Report why the versioned name failed: the unversioned one is
        // only a development symlink.
        const char *e = dlerror();
        snprintf(err, errlen, "%s", e ? e : "dlopen libnccl.so.2 failed");
        l = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
        if (!l) return -1;
    }
    struct {
        void **p;
        const char *name;
    } syms[] = {
        {(void **)&p_ncclGetVersion, "ncclGetVersion"},
        {(void **)&p_ncclCommInitAll, "ncclCommInitAll"},
        {(void **)&p_ncclCommDestroy, "ncclCommDestroy"},
        {(void **)&p_ncclGroupStart, "ncclGroupStart"},
        {(void **)&p_ncclGroupEnd, "ncclGroupEnd"},
        {(void **)&p_ncclAllReduce, "ncclAllReduce"},
        {(void **)&p_ncclBroadcast, "ncclBroadcast"},
        {(void **)&p_ncclGetErrorString, "ncclGetErrorString"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].p = dlsym(l, syms[i].name);
        if (!*syms[i].p) {
            snprintf(err, errlen, "libnccl: symbol %s not found", syms[i].name);
            dlclose(l);
            return -1;
        }
    }
    lib = l;
    return 0;
}

int fm_nccl_version(int *v) { return lib ? p_ncclGetVersion(v) : NOT_LOADED; }

int fm_nccl_init_all(uintptr_t *comms, int n, const int *devs) {
    if (!lib) return NOT_LOADED;
    comm_t *c = calloc((size_t)n, sizeof *c);
    if (!c) return 2; /* ncclSystemError */
    int r = p_ncclCommInitAll(c, n, devs);
    for (int i = 0; i < n; i++) comms[i] = (uintptr_t)c[i];
    free(c);
    return r;
}

int fm_nccl_destroy(uintptr_t comm) { return lib ? p_ncclCommDestroy((comm_t)comm) : NOT_LOADED; }
int fm_nccl_group_start(void) { return lib ? p_ncclGroupStart() : NOT_LOADED; }
int fm_nccl_group_end(void) { return lib ? p_ncclGroupEnd() : NOT_LOADED; }

int fm_nccl_allreduce_f32(uintptr_t send, uintptr_t recv, size_t count, uintptr_t comm, uintptr_t stream) {
    if (!lib) return NOT_LOADED;
    return p_ncclAllReduce((const void *)send, (void *)recv, count, NCCL_FLOAT32, NCCL_SUM, (comm_t)comm,
                           (stream_t)stream);
}

int fm_nccl_broadcast_f32(uintptr_t send, uintptr_t recv, size_t count, int root, uintptr_t comm, uintptr_t stream) {
    if (!lib) return NOT_LOADED;
    return p_ncclBroadcast((const void *)send, (void *)recv, count, NCCL_FLOAT32, root, (comm_t)comm,
                           (stream_t)stream);
}

const char *fm_nccl_error(int r) { return lib ? p_ncclGetErrorString(r) : "NCCL not loaded"; }
