/* Hole filling and min_size of a volume over 3-D owner blocks (issue 19; CELLPOSE_ALGORITHM.md
 * §4.8 with the rule of §8.9): cp_post_fill_and_min_size_3d of the whole volume, computed where
 * the blocks are. */
#ifndef CP_DPOST3_H
#define CP_DPOST3_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"
#include "dmasks3.h"
#include "grid.h"

/* The arrays of a run in the store, per block, uint32 on the block's voxels (C order): the raw
 * labels read (what cp_dmasks3_run writes) and the final labels written. */
#define CP_DPOST3_IN CP_DMASKS3_OUT /* "m03" */
#define CP_DPOST3_OUT "lab3"

/* Collective. Reads "m03" of the own blocks of the volume g (cp_grid_init3), writes "lab3" of
 * every own block = cp_post_fill_and_min_size_3d(whole volume, min_size) restricted to the block,
 * bit for bit, for any rank count and block size; *nlabels (every rank) = the largest final label.
 * Steps: (a) per-label voxel counts, first voxels and boxes reduced over the ranks, min_size and
 * renumbering by first appearance; (b) which labels have a hole, and which labels each hole
 * holds: a label whose box lies in one block is searched on its block; a label whose box crosses
 * blocks is a candidate when, in some block its box meets, a voxel of its box is not reached
 * from the box's faces inside that block (else it has no hole), and the holes of candidates are
 * found by cp_dholes3 (components of each block's share of the box, joined across block faces);
 * labels linked by holding form groups (cp_holding_groups); then the labels with a hole are
 * filled in rounds, round r filling the r-th of each group (Cellpose's order within a group;
 * groups do not touch each other's voxels), each round one cp_dholes3 pass over "lab3", and
 * renamed to Cellpose's counter; (c) min_size again, renumbering.
 * Memory of a rank, bounded by the block, never a label's box: block-sized scratch (30 bytes per
 * voxel of the largest block, one block read at a time), per-label tables (about 250 bytes per
 * label value, and 8 bytes per distinct holding edge of all ranks), and cp_dholes3's records
 * of the block faces inside the boxes of one round (dholes3.h).
 * The tables are sized by the largest raw label (read from "m03" first). "m03" is left as it
 * was. Errors (a missing or damaged block, out of memory) are returned by every rank alike. */
int cp_dpost3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, int64_t min_size,
                  int64_t *nlabels, char *err);

#endif
