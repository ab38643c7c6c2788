/* Raw masks of a volume over owner blocks (CELLPOSE_ALGORITHM.md §8.8; the plane's is dmasks.h,
 * the same code in mpi/dmasks.c): the end points of the 3-D flow following (dfollow3.h) to
 * Cellpose's masks_raw, with every rank holding one block grown by a 10-voxel halo at a time and
 * tables of the size of the number of seeds. The labels are those of cp_masks3_raw on the whole
 * volume, bit for bit, for any number of ranks and any block size. Not yet a phase of the driver.
 */
#ifndef CP_DMASKS3_H
#define CP_DMASKS3_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"
#include "grid.h"

/* The output: per block, uint32 over the block's voxels in C order. */
#define CP_DMASKS3_OUT "m03"

/* Collective. Reads "fin3" (CP_DFOLLOW3_FIN) of own blocks of the volume g (cp_grid_init3):
 * cp_particle3 records, c the end point in voxel units, of the particles whose end voxel lies in
 * the block (a block without "fin3" has none). Writes "m03" of every own block: exactly
 * cp_masks3_raw(all particles, {Lz, Ly, Lx}, max_size_fraction) restricted to the block — seeds
 * of the global histogram (5x5x5 maxima, count > 10), Cellpose's seed order, growth in
 * 11x11x11 windows, labels larger than max_size_fraction*Lz*Ly*Lx removed, renumbered by first
 * appearance in C order. *nlabels gets the number of labels (on every rank). Errors (agreed on
 * every rank, "rank R: dmasks: ..."): an end point outside the volume or NaN, an end voxel
 * outside its block, a source voxel outside the volume (CP_EDATA); more seeds than uint32
 * labels (CP_EDATA); I/O and memory failures. Scratch arrays "mh3", "mhq3", "mlq3" are removed on
 * success. */
int cp_dmasks3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store,
                   double max_size_fraction, int64_t *nlabels, char *err);

#endif
