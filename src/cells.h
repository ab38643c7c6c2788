/* The per-mask table of the output (/cells): one row per (plane, label) with area, centroid and
 * bounding box, in plane order then label order; for a 3-D segmentation one row per label of the
 * volume, z included. */
#ifndef CP_CELLS_H
#define CP_CELLS_H

#include <stdint.h>

#include "h5store.h"

/* Appends the rows of one label plane to *cells (realloc'ed; *n rows so far). */
int cp_cells_collect(const uint32_t *labels, int64_t ny, int64_t nx, uint32_t plane,
                     cp_cell **cells, int64_t *n, char *err);
/* Appends one row per label of the volume labels (nz, ny, nx), in label order: voxel count,
 * centroid (z, y, x) and box [z0, z1) x [y0, y1) x [x0, x1) (--do_3D). */
int cp_cells_collect3(const uint32_t *labels, int64_t nz, int64_t ny, int64_t nx,
                      cp_cell **cells, int64_t *n, char *err);

#endif
