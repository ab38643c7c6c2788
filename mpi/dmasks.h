/* Raw masks over owner blocks (CELLPOSE_ALGORITHM.md §4.4-4.6, DESIGN.md §2.5, §2.7 and §4
 * "Histogram and seeds"): the histogram of end points, seeds, Cellpose's global seed order,
 * growth, assignment of every particle, big-mask removal and renumbering by first appearance,
 * with every rank holding one block (plus a 10-pixel halo) at a time and tables of the size of
 * the number of seeds. The labels are those of cp_masks_raw on the whole plane, bit for bit. */
#ifndef CP_DMASKS_H
#define CP_DMASKS_H

#include <stdint.h>

#include "dplane.h"

/* Collective. Reads "fin" of own blocks (cp_particle records of finished particles whose end cell
 * lies in the block; a block without "fin" has none), writes "m0" (uint32 per block pixel):
 * exactly Cellpose's masks_raw — seeds of the global histogram, sorted by the emulated torch
 * argsort over the global row-major seed list, grown in 11x11 windows, every particle labelled by
 * the seed region of its end cell, labels larger than max_size_fraction*Ly*Lx removed,
 * renumbered by first appearance in global raster order. *nlabels gets the number of labels
 * (on every rank). Errors (agreed on every rank, "rank R: dmasks: ..."): a particle of "fin"
 * whose end point is outside the plane or NaN, whose end cell is outside its block, or whose
 * source pixel is outside the plane (CP_EDATA); more seeds than uint32 labels (CP_EDATA); I/O
 * and memory failures. Temporary block arrays "mh", "mhq", "mlq" of the plane are removed on
 * success. The volume's form is dmasks3.h. */
int cp_dmasks_run(const cp_dplane *d, double max_size_fraction, int64_t *nlabels, char *err);

#endif
