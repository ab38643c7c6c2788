/* The /cells table of a distributed plane or volume: per final label, its area, centroid and
 * bounding box, from the label blocks every rank holds, reduced over the ranks. */
#ifndef CP_DCELLS_H
#define CP_DCELLS_H

#include <stdint.h>

#include "dplane.h"
#include "h5store.h"

/* Collective: per-label area, centroid and box of the final labels ("lab") of plane d, labels
 * 1..nlabels; rank 0 gets the malloc'ed table in *cells (labels present only, in order, *ncells
 * of them; other ranks *ncells 0). Sums of integer coordinates are exact in f64, so the table
 * does not depend on the number of ranks. Every id read back is checked against nlabels: a block
 * holding a larger one is CP_EFORMAT "<file>: block (by,bx) array 'lab': label L out of range
 * [0, N]" (a damaged or foreign block file), never an index out of bounds. */
int cp_dcells_plane(const cp_dplane *d, int64_t nlabels, cp_cell **cells, int64_t *ncells,
                    char *err);

/* The same for any uint32 block array `name` of grid g (a plane or a volume) in store: plane >= 0
 * gives the rows of a 2-D plane with that index, plane < 0 the rows of 3-D masks (cz, z0, z1
 * set, as cp_cells_collect3). */
int cp_dcells_blocks(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, const char *name,
                     int64_t plane, int64_t nlabels, cp_cell **cells, int64_t *ncells, char *err);

#endif
