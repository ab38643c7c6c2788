/* Protrusion recovery (--protrusions, issue 6): after Cellpose's masks are final, foreground
 * pixels left unlabelled (thin processes whose flows faded, fragments deleted by QC / min_size, thin
 * parts of masks) are attached to the cell reached by the cheapest flow-aware path. */
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
 * (3) on unlabelled foreground pixels (cellprob > cellprob_threshold), 8-connected, each step
 *     costs a positive integer: 10 axial / 14 diagonal, + round(10 * (1 + cos(step, flow at the
 *     pixel entered)) / 2) (0 when the step opposes the flow, which points back to the cell; no
 *     flow counts as cos 0). A path starts with a step out of a source pixel, with its label,
 *     into a pixel whose flow points back at the source: cos(step, flow) < -0.8. Two rounds:
 *     (3a) over the core, unlabelled pixels with cellprob > max(2, cellprob_threshold), the
 *     sources the labelled pixels at cost 0; (3b) over the unlabelled pixels left, the sources
 *     the labelled pixels at cost 0 and the pixels (3a) attached at their (3a) costs. In each
 *     round a pixel takes the label of its best path in the order (cost, label) if that cost is
 *     <= 10 * max_len and stays 0 otherwise. Ids are not renumbered.
 * Returns 0, or CP_EPARAM / CP_ENOMEM with err. */
int cp_protrusions_attach(uint32_t *labels, const uint32_t *raw, const float *dP,
                          const float *cellprob, int64_t Ly, int64_t Lx, float cellprob_threshold,
                          int64_t max_len, char *err);

/* The same rule over windows of a plane (distributed runs). Step (1) needs two facts per raw
 * mask, gathered over the plane: */
enum { CP_PROT_CORE = 1, CP_PROT_TOUCH = 2 };
/* flags[v] |= CP_PROT_CORE if a pixel of raw mask v in the rectangle (y0, x0, ny, nx) of the
 * window (Ly, Lx) is the centre of a 7x7 square of v, |= CP_PROT_TOUCH if such a pixel is labelled
 * or 8-adjacent to a labelled pixel. Exact for the plane where the window reaches 3 pixels beyond
 * the rectangle or to the plane's edge. flags: one byte per raw id. */
int cp_protrusions_scan(const uint32_t *labels, const uint32_t *raw, int64_t Ly, int64_t Lx,
                        int64_t y0, int64_t x0, int64_t ny, int64_t nx, unsigned char *flags,
                        char *err);
/* The new ids of step (1): map[v] = label_max + i for the i-th raw id v (1..raw_max) whose flags
 * are exactly CP_PROT_CORE, else 0. Returns the largest label after the restore. */
uint32_t cp_protrusions_ids(const unsigned char *flags, uint32_t raw_max, uint32_t label_max,
                            uint32_t *map);
/* Steps (1) with map (raw or map NULL: none), (2) and (3) on a window (Ly, Lx) of the plane,
 * labels in place. A pixel's result depends only on the window within cp_protrusions_halo()
 * pixels of it: each step costs >= 10, so a path of cost <= 10 * max_len has at most max_len
 * steps; a pixel on a (3b) path is a (3b) node only if no (3a) path reaches it, which looks up
 * to max_len further; the opening of a mask looks 4 pixels around. Results further than that
 * from the window's edges (other than the plane's) are the whole plane's. */
int cp_protrusions_apply(uint32_t *labels, const uint32_t *raw, const uint32_t *map,
                         const float *dP, const float *cellprob, int64_t Ly, int64_t Lx,
                         float cellprob_threshold, int64_t max_len, char *err);
static inline int64_t cp_protrusions_halo(int64_t max_len) { return 2 * max_len + 4; }

#endif
