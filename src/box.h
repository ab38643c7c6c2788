/* A box of a volume: the unit of the window functions (resize, smoothing, the 3-D network) and of
 * the block decomposition (mpi/grid.h). */
#ifndef CP_BOX_H
#define CP_BOX_H

#include <stdint.h>

/* Voxels [o[a], o[a] + n[a]) on every axis a = 0, 1, 2 (z, y, x). */
typedef struct cp_box3 {
    int64_t o[3], n[3];
} cp_box3;

#endif
