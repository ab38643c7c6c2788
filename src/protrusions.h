/* Protrusion recovery (--protrusions, issue 6): after Cellpose's masks are final, foreground
 * pixels left unlabelled (thin processes whose flows faded, fragments deleted by QC / min_size, thin
 * parts of masks) are attached to the cell reached by the cheapest direction-aware path. */
#ifndef CP_PROTRUSIONS_H
#define CP_PROTRUSIONS_H

#include <stdint.h>

/* labels (Ly, Lx): the final masks, updated in place; raw (Ly, Lx): the masks before flow QC at
 * the same scale (NULL: step 1 skipped); dP (2, Ly, Lx) and cellprob (Ly, Lx) at the same scale.
 * The rule, a pure function of (labels, raw, dP, cellprob, cellprob_threshold, max_len):
 * (1) raw masks that QC deleted and that touch no mask (no pixel labelled or 8-adjacent to a
 *     labelled pixel) and contain a 7x7 square come back with ids max_label + 1, ... in raw id
 *     order (cell bodies QC rejected for their flow errors along processes);
 * (2) every mask is opened by the 5x5 square (pixels not covered by a 5x5 window lying inside
 *     the mask become 0; masks without one vanish);
 * (3) on the states (pixel, incoming direction) of the unlabelled foreground pixels
 *     (cellprob > cellprob_threshold), 8-connected, each step costs a positive integer: 10 axial /
 *     14 diagonal, + round(10 * (1 + cos(step, flow at the pixel entered)) / 2) (0 when the step
 *     opposes the flow, which points back to the cell), + a turning cost 0/10/40/120/200 for
 *     0/45/90/135/180 degrees between consecutive steps (none on the first step, out of a
 *     labelled pixel, which starts the path with that pixel's label). Each such pixel takes the
 *     label of its best state in the order (cost, label) if that cost is <= 10 * max_len and
 *     stays 0 otherwise. Ids are not renumbered. Returns 0, or CP_EPARAM / CP_ENOMEM with err. */
int cp_protrusions_attach(uint32_t *labels, const uint32_t *raw, const float *dP,
                          const float *cellprob, int64_t Ly, int64_t Lx, float cellprob_threshold,
                          int64_t max_len, char *err);

#endif
