/* The /cells table of a plane or a volume from its final label blocks (see dcells.h). */
#include "dcells.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"

/* Per label l: sum[4l..] = voxels, sums of z, y, x; box[6l..] = -z0, -y0, -x0, z1, y1, x1 (max). */
enum { NSUM = 4, NBOX = 6 };

/* Adds the own blocks of array `name` (uint32 block arrays of grid g) to sum and box. */
static int tally(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, const char *name,
                 int64_t nlabels, double *sum, int64_t *box, char *err)
{
    int rank, rc = 0;
    int64_t b0, b1;
    MPI_Comm_rank(comm, &rank);
    cp_grid_range(g, rank, &b0, &b1);
    for (int64_t b = b0; !rc && b < b1; b++) {
        const cp_box3 q = cp_grid_box(g, b);
        const int64_t n = q.n[0] * q.n[1] * q.n[2];
        uint32_t *v = malloc(sizeof *v * (size_t)n);
        rc = v ? cp_bstore_get(store, name, b, v, sizeof *v * (size_t)n, err)
               : cp_errf(err, CP_ENOMEM, "cells: out of memory");
        for (int64_t i = 0; !rc && i < n; i++) {
            const int64_t l = v[i];
            if (!l) continue;
            if (l > nlabels) { /* a damaged or foreign block: never an index out of bounds */
                char path[4200], where[64];
                cp_bstore_path(store, name, b, path, sizeof path);
                rc = cp_errf(err, CP_EFORMAT, "%s: block %s array '%.*s': label %lld out of "
                             "range [0, %lld]", path, cp_grid_block_coords(g, b, where, sizeof where),
                             (int)strcspn(name, "."), name, (long long)l, (long long)nlabels);
                break;
            }
            const int64_t c[3] = {q.o[0] + i / (q.n[1] * q.n[2]), q.o[1] + i / q.n[2] % q.n[1],
                                  q.o[2] + i % q.n[2]};
            double *s = sum + NSUM * l;
            int64_t *bb = box + NBOX * l;
            s[0] += 1;
            for (int k = 0; k < 3; k++) {
                s[1 + k] += (double)c[k];
                if (-c[k] > bb[k]) bb[k] = -c[k];
                if (c[k] + 1 > bb[3 + k]) bb[3 + k] = c[k] + 1;
            }
        }
        free(v);
    }
    return cp_agree(comm, rc, err);
}

int cp_dcells_blocks(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, const char *name,
                     int64_t plane, int64_t nlabels, cp_cell **cells, int64_t *ncells, char *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    const int64_t n = nlabels + 1;
    double *sum = calloc((size_t)(NSUM * n), sizeof *sum);
    int64_t *box = malloc(sizeof *box * (size_t)(NBOX * n));
    int rc = sum && box ? 0 : cp_errf(err, CP_ENOMEM, "cells: out of memory");
    for (int64_t i = 0; box && i < NBOX * n; i++) box[i] = INT64_MIN;
    rc = cp_agree(comm, rc, err);
    if (!rc) rc = tally(comm, g, store, name, nlabels, sum, box, err);
    if (!rc) {
        MPI_Allreduce(MPI_IN_PLACE, sum, (int)(NSUM * n), MPI_DOUBLE, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, box, (int)(NBOX * n), MPI_INT64_T, MPI_MAX, comm);
    }
    *ncells = 0;
    if (!rc && rank == 0) {
        const int volume = plane < 0;
        *cells = malloc(sizeof **cells * (size_t)n);
        for (int64_t l = 1; *cells && l < n; l++) {
            const double *s = sum + NSUM * l;
            const int64_t *bb = box + NBOX * l;
            if (s[0] == 0) continue;
            cp_cell c = {.id = (uint32_t)l, .plane = volume ? 0 : (uint32_t)plane,
                         .area = (uint64_t)s[0], .cy = s[2] / s[0], .cx = s[3] / s[0],
                         .y0 = -bb[1], .x0 = -bb[2], .y1 = bb[4], .x1 = bb[5]};
            if (volume) c.cz = s[1] / s[0], c.z0 = -bb[0], c.z1 = bb[3];
            (*cells)[(*ncells)++] = c;
        }
    }
    free(sum);
    free(box);
    return rc;
}

int cp_dcells_plane(const cp_dplane *d, int64_t nlabels, cp_cell **cells, int64_t *ncells,
                    char *err)
{
    char name[64];
    return cp_dcells_blocks(d->comm, &d->grid, d->store, cp_dname(d, CP_SLOT_LAB, name), d->z,
                            nlabels, cells, ncells, err);
}
