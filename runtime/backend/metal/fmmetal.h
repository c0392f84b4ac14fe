// fmmetal.h: the C ABI of the Objective-C bridge to Metal (fmmetal.m).
// Handles are retained Objective-C objects passed as opaque pointers; every
// function that creates one transfers a +1 reference to the caller, who
// gives it back with fm_mtl_release / fm_mtl_close.
#ifndef FMMETAL_H
#define FMMETAL_H

#include <stddef.h>
#include <stdint.h>

typedef void *fm_dev; // FMDevice: device, queue, pipelines, open command buffer
typedef void *fm_buf; // id<MTLBuffer>

// fm_arg is a kernel argument for [[buffer(i)]], i its index in the array:
// a buffer at a byte offset (kind 0) or 4 scalar bytes (setBytes).
typedef struct {
	fm_buf buf;
	uint64_t off;
	uint32_t bits;
	uint32_t kind;
} fm_arg;

// fm_mtl_open compiles src (MSL) and makes a pipeline for every kernel in
// it. Returns NULL and a message in err on failure.
fm_dev fm_mtl_open(const char *src, char *err, int errlen);
void fm_mtl_close(fm_dev d);
void fm_mtl_name(fm_dev d, char *out, int len);
int fm_mtl_max_tg_mem(fm_dev d);
int fm_mtl_max_threads(fm_dev d, const char *kernel); // 0: no such kernel

fm_buf fm_mtl_buffer(fm_dev d, size_t n);                  // shared, zeroed
fm_buf fm_mtl_buffer_nocopy(fm_dev d, void *p, size_t n); // p, n page-aligned
void fm_mtl_release(fm_buf b);
void *fm_mtl_contents(fm_buf b);

void fm_mtl_dispatch(fm_dev d, const char *kernel, unsigned gx, unsigned gy, unsigned threads, unsigned shared,
                     const fm_arg *args, int nargs);
void fm_mtl_copy(fm_dev d, fm_buf dst, size_t doff, fm_buf src, size_t soff, size_t n);
void fm_mtl_zero(fm_dev d, fm_buf b, size_t off, size_t n);
void fm_mtl_commit(fm_dev d);
// fm_mtl_wait waits for every committed command buffer; 0, or -1 with the
// first error in err.
int fm_mtl_wait(fm_dev d, char *err, int errlen);

#endif
