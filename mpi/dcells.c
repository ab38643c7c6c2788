/* The /cells table of a plane from its "lab" blocks (see dcells.h). */
#include "dcells.h"

#include <stdio.h>
#include <stdlib.h>

#include "agree.h"
#include "cp_err.h"

int cp_dcells_plane(const cp_dplane *d, int64_t nlabels, cp_cell **cells, int64_t *ncells,
                    char *err)
{
    int64_t n = nlabels + 1, b0, b1;
    double *sum = calloc((size_t)(3 * n), sizeof *sum);          /* area, sum y, sum x */
    int64_t *box = malloc(sizeof *box * (size_t)(4 * n));       /* -y0, -x0, y1, x1 (max) */
    int rc = sum && box ? 0 : cp_errf(err, CP_ENOMEM, "cells: out of memory");
    for (int64_t i = 0; box && i < 4 * n; i++) box[i] = INT64_MIN;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char name[64];
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect q = cp_grid_block(&d->grid, b);
        uint32_t *v = malloc(sizeof *v * (size_t)(q.ny * q.nx));
        rc = v ? cp_bstore_get(d->store, cp_dname(d, CP_SLOT_LAB, name), b, v,
                               sizeof *v * (size_t)(q.ny * q.nx), err)
               : cp_errf(err, CP_ENOMEM, "cells: out of memory");
        for (int64_t y = 0; !rc && y < q.ny; y++)
            for (int64_t x = 0; !rc && x < q.nx; x++) {
                int64_t l = v[y * q.nx + x], gy = q.y0 + y, gx = q.x0 + x;
                if (!l) continue;
                if (l > nlabels) { /* a damaged or foreign block: never an index out of bounds */
                    char path[4200];
                    cp_bstore_path(d->store, name, b, path, sizeof path);
                    rc = cp_errf(err, CP_EFORMAT, "%s: block (%lld,%lld) array 'lab': label %lld "
                                 "out of range [0, %lld]", path, (long long)(b / d->grid.nbx),
                                 (long long)(b % d->grid.nbx), (long long)l, (long long)nlabels);
                    break;
                }
                sum[3 * l] += 1, sum[3 * l + 1] += (double)gy, sum[3 * l + 2] += (double)gx;
                int64_t *bb = box + 4 * l;
                if (-gy > bb[0]) bb[0] = -gy;
                if (-gx > bb[1]) bb[1] = -gx;
                if (gy + 1 > bb[2]) bb[2] = gy + 1;
                if (gx + 1 > bb[3]) bb[3] = gx + 1;
            }
        free(v);
    }
    rc = cp_agree(d->comm, rc, err);
    if (!rc) {
        MPI_Allreduce(MPI_IN_PLACE, sum, (int)(3 * n), MPI_DOUBLE, MPI_SUM, d->comm);
        MPI_Allreduce(MPI_IN_PLACE, box, (int)(4 * n), MPI_INT64_T, MPI_MAX, d->comm);
    }
    *ncells = 0;
    if (!rc && d->rank == 0) {
        *cells = malloc(sizeof **cells * (size_t)n);
        for (int64_t l = 1; *cells && l < n; l++) {
            if (sum[3 * l] == 0) continue;
            double a = sum[3 * l];
            (*cells)[(*ncells)++] = (cp_cell){
                .id = (uint32_t)l, .plane = (uint32_t)d->z, .area = (uint64_t)a,
                .cy = sum[3 * l + 1] / a, .cx = sum[3 * l + 2] / a, .y0 = -box[4 * l],
                .x0 = -box[4 * l + 1], .y1 = box[4 * l + 2], .x1 = box[4 * l + 3]};
        }
    }
    free(sum);
    free(box);
    return rc;
}

