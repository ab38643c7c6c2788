/* Reader of PyTorch .pth files (torch.save of a state_dict): the zip container through libzip,
 * the pickle of the state dict by a small interpreter of the opcodes PyTorch writes
 * (CELLPOSE_ALGORITHM.md §3.1), tensors converted to float32 honouring offset and strides. */
#ifndef CP_PTH_H
#define CP_PTH_H

#include <stdint.h>

#define CP_PTH_MAXDIM 6

typedef struct cp_tensor {
    char *name;                    /* state-dict key, e.g. "output.2.weight" */
    int ndim;                      /* 0 for scalars */
    int64_t shape[CP_PTH_MAXDIM];
    int64_t numel;
    float *data;                   /* numel values, C order, converted from the storage type */
} cp_tensor;

typedef struct cp_pth {
    int n;
    cp_tensor *t;                  /* in state-dict order */
} cp_pth;

/* Reads every tensor of path. Errors: not a zip / legacy format, truncated file, unknown pickle
 * opcode or global, storage out of bounds, a zip entry whose CRC-32 does not match its bytes
 * (CP_EFORMAT), a NaN or Inf weight (CP_EDATA: "m.pth: tensor 'w': NaN at element 5") — each
 * named with the file. */
int cp_pth_read(const char *path, cp_pth *out, char *err);
/* The tensor called name, or NULL. */
const cp_tensor *cp_pth_find(const cp_pth *p, const char *name);
void cp_pth_free(cp_pth *p);

#endif
