/* The nearest resize of the masks of a volume over 3-D blocks (--no_resample with --do_3D,
 * CELLPOSE_ALGORITHM.md §8.9): the labels at the dynamics scale, blocks of grid src, to the
 * labels grid dst, voxel for voxel cp_masks3_resize_back of the whole volume (each axis's
 * source index by cp_nearest_source). */
#ifndef CP_DRESIZE3_H
#define CP_DRESIZE3_H

#include <mpi.h>

#include "bstore.h"
#include "grid.h"

/* Collective. Array `name` (uint32) of the own blocks of src in store ss -> array `name` of the
 * own blocks of dst in store ds. In rounds: round i resizes every rank's i-th own block of dst
 * from the source box its voxels read, whose voxels the owners of src's blocks send (16 bytes
 * per voxel in transit). Memory of a rank: that box (4 bytes per voxel), one block of src and
 * one of dst. Errors (a missing or damaged block, out of memory) are agreed. */
int cp_dresize3_nearest(MPI_Comm comm, const cp_grid *src, const cp_bstore *ss,
                        const cp_grid *dst, const cp_bstore *ds, const char *name, char *err);

#endif
