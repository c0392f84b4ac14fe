//go:build darwin && arm64 && cgo

// fmmetal.m: the Objective-C side of the Metal backend, built with ARC
// (-fobjc-arc). Objects cross to C with __bridge_retained (+1 to the
// caller) and come back with __bridge (borrowed) or __bridge_transfer (the
// caller's reference given back). Each entry point runs in an
// @autoreleasepool because it is called from Go threads that have none.

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#include <string.h>

#include "fmmetal.h"

@interface FMDevice : NSObject
@property(strong) id<MTLDevice> device;
@property(strong) id<MTLCommandQueue> queue;
@property(strong) NSMutableDictionary<NSString *, id<MTLComputePipelineState>> *pipelines;
@property(strong) id<MTLCommandBuffer> cmd;               // being encoded
@property(strong) id<MTLComputeCommandEncoder> compute;   // open encoder of cmd, at most one
@property(strong) id<MTLBlitCommandEncoder> blit;
@property(strong) NSMutableArray<id<MTLCommandBuffer>> *committed; // since the last wait
@end

@implementation FMDevice
@end

static void put_err(char *err, int errlen, NSString *msg) {
	if (errlen <= 0) return;
	const char *s = msg ? [msg UTF8String] : "unknown error";
	strncpy(err, s ? s : "unknown error", (size_t)errlen - 1);
	err[errlen - 1] = 0;
}

fm_dev fm_mtl_open(const char *src, char *err, int errlen) {
	@autoreleasepool {
		id<MTLDevice> dev = MTLCreateSystemDefaultDevice();
		if (!dev) {
			put_err(err, errlen, @"no Metal device");
			return NULL;
		}
		MTLCompileOptions *opts = [[MTLCompileOptions alloc] init];
		// The conformance tolerances assume IEEE-style float math: no
		// reassociation, precise intrinsics (the prelude also spells out
		// metal::precise::). fastMathEnabled is deprecated from macOS 15 in
		// favour of mathMode, and still honoured.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
		opts.fastMathEnabled = NO;
#pragma clang diagnostic pop
#if defined(MAC_OS_VERSION_15_0) && MAC_OS_X_VERSION_MAX_ALLOWED >= MAC_OS_VERSION_15_0
		if (@available(macOS 15.0, *)) {
			opts.mathMode = MTLMathModeSafe;
			opts.mathFloatingPointFunctions = MTLMathFloatingPointFunctionsPrecise;
		}
#endif
		NSError *e = nil;
		id<MTLLibrary> lib = [dev newLibraryWithSource:[NSString stringWithUTF8String:src] options:opts error:&e];
		if (!lib) {
			put_err(err, errlen, [NSString stringWithFormat:@"compiling the kernels: %@", e.localizedDescription]);
			return NULL;
		}
		FMDevice *d = [[FMDevice alloc] init];
		d.device = dev;
		d.queue = [dev newCommandQueue];
		d.pipelines = [NSMutableDictionary dictionary];
		d.committed = [NSMutableArray array];
		for (NSString *name in lib.functionNames) {
			id<MTLFunction> fn = [lib newFunctionWithName:name];
			if (!fn || fn.functionType != MTLFunctionTypeKernel) continue;
			id<MTLComputePipelineState> p = [dev newComputePipelineStateWithFunction:fn error:&e];
			if (!p) {
				put_err(err, errlen, [NSString stringWithFormat:@"pipeline %@: %@", name, e.localizedDescription]);
				return NULL;
			}
			// simd_sum and the bodies' lane arithmetic assume 32 lanes.
			if (p.threadExecutionWidth != 32) {
				put_err(err, errlen,
				        [NSString stringWithFormat:@"pipeline %@: SIMD width %lu, the kernels need 32", name,
				                                   (unsigned long)p.threadExecutionWidth]);
				return NULL;
			}
			d.pipelines[name] = p;
		}
		if (!d.queue || d.pipelines.count == 0) {
			put_err(err, errlen, @"no command queue or no kernels");
			return NULL;
		}
		return (__bridge_retained void *)d;
	}
}

void fm_mtl_close(fm_dev h) {
	@autoreleasepool {
		FMDevice *d = (__bridge_transfer FMDevice *)h;
		d.compute = nil;
		d.blit = nil;
		d.cmd = nil;
	}
}

void fm_mtl_name(fm_dev h, char *out, int len) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		put_err(out, len, d.device.name);
	}
}

int fm_mtl_max_tg_mem(fm_dev h) {
	FMDevice *d = (__bridge FMDevice *)h;
	return (int)d.device.maxThreadgroupMemoryLength;
}

int fm_mtl_max_threads(fm_dev h, const char *kernel) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		id<MTLComputePipelineState> p = d.pipelines[[NSString stringWithUTF8String:kernel]];
		return p ? (int)p.maxTotalThreadsPerThreadgroup : 0;
	}
}

fm_buf fm_mtl_buffer(fm_dev h, size_t n) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		id<MTLBuffer> b = [d.device newBufferWithLength:n options:MTLResourceStorageModeShared];
		if (!b) return NULL;
		memset(b.contents, 0, n); // the Backend contract: Alloc is zeroed
		return (__bridge_retained void *)b;
	}
}

fm_buf fm_mtl_buffer_nocopy(fm_dev h, void *p, size_t n) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		// No deallocator: the Go side owns the memory (an mmap) and unmaps
		// it only after releasing this buffer and waiting for the GPU.
		id<MTLBuffer> b = [d.device newBufferWithBytesNoCopy:p
		                                              length:n
		                                             options:MTLResourceStorageModeShared
		                                         deallocator:nil];
		return b ? (__bridge_retained void *)b : NULL;
	}
}

void fm_mtl_release(fm_buf b) {
	@autoreleasepool {
		id<MTLBuffer> x = (__bridge_transfer id<MTLBuffer>)b;
		(void)x;
	}
}

void *fm_mtl_contents(fm_buf b) { return ((__bridge id<MTLBuffer>)b).contents; }

static id<MTLCommandBuffer> current(FMDevice *d) {
	if (!d.cmd) d.cmd = [d.queue commandBuffer];
	return d.cmd;
}

static id<MTLComputeCommandEncoder> computeEncoder(FMDevice *d) {
	if (d.blit) {
		[d.blit endEncoding];
		d.blit = nil;
	}
	// Serial dispatch (the default): each dispatch sees the writes of the
	// one before, which the ops rely on.
	if (!d.compute) d.compute = [current(d) computeCommandEncoder];
	return d.compute;
}

static id<MTLBlitCommandEncoder> blitEncoder(FMDevice *d) {
	if (d.compute) {
		[d.compute endEncoding];
		d.compute = nil;
	}
	if (!d.blit) d.blit = [current(d) blitCommandEncoder];
	return d.blit;
}

void fm_mtl_dispatch(fm_dev h, const char *kernel, unsigned gx, unsigned gy, unsigned threads, unsigned shared,
                     const fm_arg *args, int nargs) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		id<MTLComputePipelineState> p = d.pipelines[[NSString stringWithUTF8String:kernel]];
		if (!p) return; // the Go side checked maxThreads first
		id<MTLComputeCommandEncoder> enc = computeEncoder(d);
		[enc setComputePipelineState:p];
		for (int i = 0; i < nargs; i++) {
			if (args[i].kind == 0) {
				[enc setBuffer:(__bridge id<MTLBuffer>)args[i].buf offset:(NSUInteger)args[i].off atIndex:(NSUInteger)i];
			} else {
				[enc setBytes:&args[i].bits length:4 atIndex:(NSUInteger)i];
			}
		}
		if (shared > 0) [enc setThreadgroupMemoryLength:shared atIndex:0];
		[enc dispatchThreadgroups:MTLSizeMake(gx, gy, 1) threadsPerThreadgroup:MTLSizeMake(threads, 1, 1)];
	}
}

void fm_mtl_copy(fm_dev h, fm_buf dst, size_t doff, fm_buf src, size_t soff, size_t n) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		[blitEncoder(d) copyFromBuffer:(__bridge id<MTLBuffer>)src
		                  sourceOffset:soff
		                      toBuffer:(__bridge id<MTLBuffer>)dst
		             destinationOffset:doff
		                          size:n];
	}
}

void fm_mtl_zero(fm_dev h, fm_buf b, size_t off, size_t n) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		[blitEncoder(d) fillBuffer:(__bridge id<MTLBuffer>)b range:NSMakeRange(off, n) value:0];
	}
}

void fm_mtl_commit(fm_dev h) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		if (!d.cmd) return;
		[d.compute endEncoding];
		[d.blit endEncoding];
		d.compute = nil;
		d.blit = nil;
		[d.cmd commit];
		[d.committed addObject:d.cmd];
		d.cmd = nil;
	}
}

int fm_mtl_wait(fm_dev h, char *err, int errlen) {
	@autoreleasepool {
		FMDevice *d = (__bridge FMDevice *)h;
		// A queue runs its command buffers in order: waiting for the last
		// waits for all; each is then checked for its own error.
		[d.committed.lastObject waitUntilCompleted];
		int rc = 0;
		for (id<MTLCommandBuffer> c in d.committed) {
			if (rc == 0 && c.status == MTLCommandBufferStatusError) {
				put_err(err, errlen, [NSString stringWithFormat:@"command buffer: %@", c.error.localizedDescription]);
				rc = -1;
			}
		}
		[d.committed removeAllObjects];
		return rc;
	}
}
