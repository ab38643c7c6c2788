/* A box of a volume: the unit of the window functions (resize, smoothing, the 3-D network) and of
 * the block decomposition (mpi/grid.h). */
#ifndef CP_BOX_H
#define CP_BOX_H

#include <stdint.h>

/* Voxels [o[a], o[a] + n[a]) on every axis a = 0, 1, 2 (z, y, x). */
typedef struct cp_box3 {
    int64_t o[3], n[3];
} cp_box3;

static inline int64_t cp_box3_voxels(cp_box3 b) { return b.n[0] * b.n[1] * b.n[2]; }

/* The intersection of a and b (no voxels when they do not meet). */
static inline cp_box3 cp_box3_meet(cp_box3 a, cp_box3 b)
{
    cp_box3 r;
    for (int k = 0; k < 3; k++) {
        int64_t lo = a.o[k] > b.o[k] ? a.o[k] : b.o[k];
        int64_t hi = a.o[k] + a.n[k] < b.o[k] + b.n[k] ? a.o[k] + a.n[k] : b.o[k] + b.n[k];
        r.o[k] = lo, r.n[k] = hi > lo ? hi - lo : 0;
    }
    return r;
}

#endif
