/* Protrusion recovery over blocks (--protrusions; the rule is src/protrusions.h): the step (1)
 * facts of every raw mask are gathered over the plane (one byte per raw mask, OR-reduced), then
 * each block is computed on the block grown by cp_protrusions_halo(max_len), read from the block
 * files of its neighbours in the work directory, and its centre becomes the block's labels.
 * Labels identical to cp_protrusions_attach on the whole plane. */
#ifndef CP_DPROT_H
#define CP_DPROT_H

#include <stdint.h>

#include "dplane.h"

/* Collective. Reads "lab" (final masks), "m0" (masks before QC) and "dp" of the plane's blocks;
 * rewrites "lab" of own blocks. raw_max: the largest "m0" id (cp_dmasks_run's count); *nlabels:
 * the largest "lab" id on entry (cp_dpost_run's), the largest label afterwards (ids are not
 * compacted: masks that the opening removes leave gaps, like the single process). Memory per
 * rank: the grown block (side B + 2 * cp_protrusions_halo(max_len)) and its path states, plus
 * one byte and one id per raw mask. */
int cp_dprot_run(const cp_dplane *d, float cellprob_threshold, int64_t max_len, uint32_t raw_max,
                 int64_t *nlabels, char *err);

#endif
