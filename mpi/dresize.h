/* INTER_NEAREST resize of a plane's block arrays onto another block grid (--no_resample with a
 * diameter other than the model's: the masks are computed at the network scale and resized back
 * to the image, DESIGN.md §2.7). Each destination pixel copies the value of its source pixel
 * (cp_nearest_source per axis), exactly as cp_resize_nearest_u32 on the whole plane. */
#ifndef CP_DRESIZE_H
#define CP_DRESIZE_H

#include "dplane.h"

/* Collective. Array `what` of plane src, resized to plane dst's size, becomes array `to` of
 * dst's own blocks (read from every block it needs: the work directory is shared). A block
 * array of 32-bit values with its slot's channels and growth (CP_SLOT_DP: resized as bits, as
 * the single process resizes dP and cellprob for --protrusions). Memory: one destination block and its
 * source window. */
int cp_dresize_nearest(const cp_dplane *src, cp_slot what, const cp_dplane *dst, cp_slot to,
                       char *err);

#endif
