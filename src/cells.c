/* Per-mask statistics of a label plane or volume (see cells.h). */
#include "cells.h"

#include <stdlib.h>

#include "cp_err.h"

/* The rows of labels (nz, ny, nx) appended to *cells: one per label over all nz planes, with z
 * (cz, z0, z1) counted from 0; plane set on every row. */
static int collect(const uint32_t *labels, int64_t nz, int64_t ny, int64_t nx, uint32_t plane,
                   cp_cell **cells, int64_t *n, char *err)
{
    int64_t nvox = nz * ny * nx;
    uint32_t max = 0;
    for (int64_t i = 0; i < nvox; i++) max = labels[i] > max ? labels[i] : max;
    if (!max) return 0;
    cp_cell *c = calloc((size_t)max + 1, sizeof *c);
    if (!c) return cp_errf(err, CP_ENOMEM, "cells: out of memory for %u labels", max);
    for (int64_t z = 0; z < nz; z++)
        for (int64_t y = 0; y < ny; y++)
            for (int64_t x = 0; x < nx; x++) {
                uint32_t v = labels[(z * ny + y) * nx + x];
                if (!v) continue;
                cp_cell *k = &c[v];
                if (!k->area) k->z0 = z, k->y0 = y, k->x0 = x, k->y1 = y + 1, k->x1 = x + 1;
                k->area++;
                k->cz += (double)z;
                k->cy += (double)y;
                k->cx += (double)x;
                if (y < k->y0) k->y0 = y;
                if (x < k->x0) k->x0 = x;
                if (y + 1 > k->y1) k->y1 = y + 1;
                if (x + 1 > k->x1) k->x1 = x + 1;
                k->z1 = z + 1;
            }
    int64_t present = 0;
    for (uint32_t v = 1; v <= max; v++) present += c[v].area > 0;
    cp_cell *grown = realloc(*cells, sizeof *grown * (size_t)(*n + present));
    if (!grown) {
        free(c);
        return cp_errf(err, CP_ENOMEM, "cells: out of memory");
    }
    *cells = grown;
    for (uint32_t v = 1; v <= max; v++) {
        cp_cell k = c[v];
        if (!k.area) continue;
        k.id = v;
        k.plane = plane;
        k.cz /= (double)k.area;
        k.cy /= (double)k.area;
        k.cx /= (double)k.area;
        grown[(*n)++] = k;
    }
    free(c);
    return 0;
}

int cp_cells_collect(const uint32_t *labels, int64_t ny, int64_t nx, uint32_t plane,
                     cp_cell **cells, int64_t *n, char *err)
{
    return collect(labels, 1, ny, nx, plane, cells, n, err);
}

int cp_cells_collect3(const uint32_t *labels, int64_t nz, int64_t ny, int64_t nx,
                      cp_cell **cells, int64_t *n, char *err)
{
    return collect(labels, nz, ny, nx, 0, cells, n, err);
}
