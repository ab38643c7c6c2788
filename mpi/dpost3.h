/* Hole filling and min_size of a volume over 3-D owner blocks (issue 19; CELLPOSE_ALGORITHM.md
 * §4.8 with the rule of §8.9): cp_post_fill_and_min_size_3d of the whole volume, computed where
 * the blocks are. */
#ifndef CP_DPOST3_H
#define CP_DPOST3_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"
#include "grid.h"

/* The arrays of a run in the store, per block, uint32 on the block's voxels (C order): the raw
 * labels read, the final labels written, and a scratch queue of edits. */
#define CP_DPOST3_IN "m03"
#define CP_DPOST3_OUT "lab3"
#define CP_DPOST3_EDITS "lab3.ed"

/* Collective. Reads "m03" of the own blocks of the volume g (cp_grid_init3), writes "lab3" of
 * every own block = cp_post_fill_and_min_size_3d(whole volume, min_size) restricted to the block,
 * bit for bit, for any rank count and block size; *nlabels (every rank) = the largest final label.
 * Steps: (a) per-label voxel counts, first voxels and boxes reduced over the ranks, min_size and
 * renumbering by first appearance; (b) a label whose box lies in one block is searched for holes
 * on its block; a label whose box crosses blocks is a candidate when, in some block, a voxel of
 * its box is not reached from the box's own faces inside that block (else it has no hole); the
 * boxes of candidates are gathered, in batches, at an owner which finds their holes and the
 * labels they hold; groups of labels linked by holding (and a crossing label with a hole) are
 * filled at an owner on a canvas of the group's box with cp_post_fill_and_min_size_3d, the voxels
 * it changes sent back as edits; a label alone with its box in one block is filled on its block;
 * every other label is only renamed to Cellpose's counter; (c) min_size again, renumbering.
 * Memory of a rank: a few block-sized arrays, tables of a few words per label, and, at an owner,
 * the canvas (5 bytes + 8 bytes of scratch per voxel... see dpost3.c) of one candidate's or one
 * group's box: a box larger than a block is held whole by one rank (not yet face-joined).
 * Errors (a label above the largest, a missing block, out of memory) are agreed over comm. */
int cp_dpost3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, int64_t min_size,
                  int64_t *nlabels, char *err);

#endif
