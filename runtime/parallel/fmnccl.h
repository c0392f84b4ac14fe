// The NCCL entry points fmoe uses, loaded at run time (fmnccl.c) so that
// the binary builds and runs where NCCL is not installed.
#ifndef FMNCCL_H
#define FMNCCL_H

#include <stddef.h>
#include <stdint.h>

// fm_nccl_load opens libnccl once; 0 on success, else err says why.
int fm_nccl_load(char *err, int errlen);
int fm_nccl_version(int *v);
// comms receives n communicator handles, one per device of devs.
int fm_nccl_init_all(uintptr_t *comms, int n, const int *devs);
int fm_nccl_destroy(uintptr_t comm);
int fm_nccl_group_start(void);
int fm_nccl_group_end(void);
int fm_nccl_allreduce_f32(uintptr_t send, uintptr_t recv, size_t count, uintptr_t comm, uintptr_t stream);
int fm_nccl_broadcast_f32(uintptr_t send, uintptr_t recv, size_t count, int root, uintptr_t comm, uintptr_t stream);
const char *fm_nccl_error(int r);

#endif
