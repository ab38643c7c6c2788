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
 * labels read (what cp_dmasks3_run writes), the final labels written, and a scratch queue of
 * edits. */
#define CP_DPOST3_IN CP_DMASKS3_OUT /* "m03" */
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
 * Memory of a rank: block-sized scratch (21 bytes per voxel of the largest block, one block
 * read at a time); per-label tables (about 250 bytes per label value, and 8 bytes per distinct
 * holding edge of all ranks); records in transit (16 bytes per nonzero voxel of a batch of boxes
 * of at least 2^20 voxels, and 24 bytes per voxel a fill changes). Not bounded by the block: at
 * the owner of a candidate, a canvas of its whole box (13 bytes per box voxel), and at the owner
 * of a group filled on a canvas, the group's box (17 bytes per voxel, plus up to 9 bytes per
 * voxel of its largest member's box inside cp_post_fill_and_min_size_3d). A box larger than a
 * block is thus held whole by one rank; joining the background components of a box across
 * block faces instead is not done yet.
 * The tables are sized by the largest raw label (read from "m03" first). "m03" is left as it
 * was; the queue "lab3.ed" is emptied. Errors (a missing or damaged block, out of memory) are
 * returned by every rank alike. */
int cp_dpost3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, int64_t min_size,
                  int64_t *nlabels, char *err);

#endif
