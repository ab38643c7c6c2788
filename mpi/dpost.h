/* Per-mask post-processing over owner blocks (DESIGN.md §2.6-2.8, CELLPOSE_ALGORITHM.md
 * §4.7-4.9): flow-error QC, hole filling with Cellpose's label counter and swallowing, the
 * corrected min_size rule and renumbering by first appearance, each mask decided at one place:
 * in its block when its bounding box lies in one block, else at the rank owning its first pixel,
 * which gathers what the mask needs and sends the edits back. */
#ifndef CP_DPOST_H
#define CP_DPOST_H

#include <stdint.h>

#include "dplane.h"

/* Collective. Reads "m0" (raw masks, renumbered) and "dp" (for dP/5) of own blocks; writes "qc"
 * (after the flow QC when flow_threshold > 0 and any label exists; labels not renumbered) and
 * "lab" (after hole filling and min_size: identical to cp_post_flow_qc + cp_post_fill_and_min_size
 * on the whole plane). *nlabels: labels in "lab" — the number of masks when min_size > 0 (ids
 * 1..n); with min_size <= 0 the largest id (swallowed masks leave gaps in Cellpose's compaction).
 * Memory per rank: O(block) plus tables of the number of labels, plus, at an owner, the bounding
 * box of the largest crossing mask (or group of masks inside each other's holes) it decides. */
int cp_dpost_run(const cp_dplane *d, double flow_threshold, int64_t min_size, int64_t *nlabels,
                 char *err);

/* Collective. The flow QC alone: "qc" of own blocks from "m0" and "dp", as cp_dpost_run writes
 * it (for --no_resample with a rescale, where hole filling and min_size come after the resize). */
int cp_dpost_qc(const cp_dplane *d, double flow_threshold, char *err);

#endif
