/* Flow following in 3-D over owner blocks (CELLPOSE_ALGORITHM.md §8.7; the 2-D one is
 * dfollow.h): the particle rounds of prounds.h with src/follow3d.c's particles and kernel. A
 * particle advances on one block's field window (the block grown by 1 voxel) until a corner of its
 * stencil leaves it, then migrates to the block (and rank) whose window holds the stencil, so the
 * end points are bit-identical to cp_follow3_run on the whole volume for any number of ranks and
 * any block size. Not yet a phase of the driver: the caller puts the field in the store. */
#ifndef CP_DFOLLOW3_H
#define CP_DFOLLOW3_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"
#include "grid.h"

/* The arrays of a run in the store: per block, the input field "dp3", float32 (4, nz, ny, nx) on
 * the block grown by 1 voxel (cp_box3_grow(block, 1)): dZ, dY, dX, cellprob; the output "fin3",
 * cp_particle3 records with c the end point in voxel units (cp_follow3_to_voxels); the queues. */
#define CP_DFOLLOW3_FIELD "dp3"
#define CP_DFOLLOW3_FIN "fin3"

/* Every rank writes "dp3" of its own blocks of the volume g (cp_grid_init3) from the whole
 * dP (3, Lz, Ly, Lx) and cellprob (Lz, Ly, Lx) it holds (tests). Collective (status agreed). */
int cp_dfollow3_put(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, const float *dP,
                    const float *cellprob, char *err);

/* Collective. Reads "dp3" of own blocks; one particle per voxel of a block with cellprob >
 * (float)threshold (src = (z * Ly + y) * Lx + x, as cp_follow3_particles); advances all particles
 * `steps` (>= 0) iterations with or without interp; writes "fin3" of every own block (an empty
 * array where none ends): the particles whose end voxel (each coordinate truncated, clamped to
 * the volume) lies in the block, sorted by src. A particle meeting NaN flows is CP_EDATA, as in
 * cp_compute_masks3. max_msg, max_held: as cp_dfollow_run_opts (a volume run: INT_MAX / nranks,
 * and the particles of two blocks, at most CP_DFOLLOW_MAX_HELD). *rounds: number of
 * communication rounds. A failure on any rank, bad parameters included (cp_follow3_check), is
 * returned by every rank. */
int cp_dfollow3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, int32_t steps,
                    int interp, float threshold, int64_t max_msg, int64_t max_held,
                    int64_t *rounds, char *err);

#endif
