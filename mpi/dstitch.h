/* A stack's label planes over the ranks, kept in the block store (issue 18): rank r owns the
 * contiguous planes [z0, z1) and keeps each as entry z of one array of the store, so no rank
 * holds more than a couple of planes. On them: stitching exactly as cp_post_stitch on the whole
 * volume (dstitch.c), then the 3-D hole filling, min_size and renumbering exactly as
 * cp_post_fill_and_min_size on the whole volume (dfill3.c). */
#ifndef CP_DSTITCH_H
#define CP_DSTITCH_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"

typedef struct cp_dvol {
    MPI_Comm comm;
    int rank, nranks;
    const cp_bstore *store;
    const char *name;     /* the planes: entry z of this array = plane z, ny*nx uint32 */
    int64_t nz, ny, nx;
    int64_t z0, z1;       /* this rank's planes */
} cp_dvol;

/* The volume (nz, ny, nx) of array `name` of store s over comm (not collective). */
void cp_dvol_init(cp_dvol *v, MPI_Comm comm, const cp_bstore *s, const char *name, int64_t nz,
                  int64_t ny, int64_t nx);
/* The planes [*z0, *z1) of rank r: balanced contiguous ranges (empty when nz < nranks). */
void cp_dvol_range(int64_t nz, int nranks, int r, int64_t *z0, int64_t *z1);
/* The rank owning plane z. */
int cp_dvol_owner(const cp_dvol *v, int64_t z);
/* Plane z (an own plane) from / into the store. */
int cp_dvol_get(const cp_dvol *v, int64_t z, uint32_t *plane, char *err);
int cp_dvol_put(const cp_dvol *v, int64_t z, const uint32_t *plane, char *err);

/* Collective: the planes (each numbered on its own) stitched in place as cp_post_stitch stitches
 * the whole volume with the IoU threshold; *nlabels (every rank) = the largest id given. The
 * pixel work (overlap tables of each plane with the one below, one plane sent to the next
 * rank's owner) runs on all ranks at once; the choice of ids then passes along the ranks in
 * order, on the tables only, with each rank's last map of labels sent to the next. Errors as
 * cp_post_stitch's (CP_EDATA past 2^32-1 ids), agreed. Scratch arrays "<name>.pairs" and
 * "<name>.map" are left in the store. */
int cp_dstitch_planes(const cp_dvol *v, double threshold, int64_t *nlabels, char *err);

/* Collective: the stitched planes (ids 1..nlabels) in place as cp_post_fill_and_min_size(vol,
 * nz, ny, nx, min_size) on the whole volume (nz > 1: 6-connected holes in each label's 3-D
 * box). Labels are decided alone where they have no hole (then only renumbered); a label with a
 * hole and the labels it holds are filled together at one owner on a canvas of their box, in
 * batches of about one plane of voxels. *nfinal (every rank): the largest final id. */
int cp_dfill3_run(const cp_dvol *v, int64_t nlabels, int64_t min_size, int64_t *nfinal,
                  char *err);

#endif
