/* Ideal flows from a label image, Cellpose's masks_to_flows on CPU (CELLPOSE_ALGORITHM.md §4.2):
 * per label, heat diffusion from the pixel nearest the centroid inside the label's box, in f64,
 * bit-exact. Used by the flow-error QC, by tests, and to make synthetic flow fields. */
#ifndef CP_FLOWS_H
#define CP_FLOWS_H

#include <stdint.h>

/* labels (Ly, Lx) -> mu (2, Ly, Lx) float64 unit flows (dY plane then dX plane); 0 on background.
 * OpenMP over labels. */
int cp_masks_to_flows(const uint32_t *labels, int64_t Ly, int64_t Lx, double *mu, char *err);

#endif
