/* A stack on all ranks of a communicator (issue 18): rank r takes the contiguous planes
 * [z0, z1) of cp_dvol_range, segments them one at a time, each through the block pipeline on the
 * rank alone (from the image or from saved flows), and keeps each plane's labels (and flows) in
 * the block store, never the stack; with --stitch_threshold the planes are stitched and
 * hole-filled in 3-D where they are (dstitch.h). Labels are those of the single process on any
 * number of ranks. */
#ifndef CP_DSTACK_H
#define CP_DSTACK_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"
#include "h5store.h"
#include "image.h"
#include "params.h"
#include "plan.h"
#include "timing.h"

/* Plane z of the stack on this rank alone (the driver's block pipeline): its labels (Ly0, Lx0)
 * into lab and, if flows is not NULL, its flows (3, Ly, Lx): dY, dX, cellprob. norm: the plane's
 * normalization constants (NULL: none); inv: the channels to invert. */
typedef int (*cp_dstack_plane)(void *ctx, int64_t z, const cp_norm *norm, const int inv[2],
                               uint32_t *lab, float *flows, char *err);

typedef struct cp_dstack {
    MPI_Comm comm;
    const cp_params *p;
    const cp_plan *plan;     /* nz > 1 planes of Ly0 x Lx0, their flows at Ly x Lx */
    cp_image *im;            /* the stack; NULL: saved flows (nothing to normalize) */
    cp_dstack_plane plane;   /* segments one plane */
    void *ctx;               /* its first argument */
    const char *input;       /* the image or flows file, for messages */
    const cp_bstore *store;  /* the work folder: planes and their flows, scratch of stitching */
    const char *out_path;
    cp_timing *tm;
} cp_dstack;

/* Collective over s->comm: segments, stitches (--stitch_threshold > 0) and writes /labels (and
 * /flows, /cellprob with --save_flows) of the output *h it creates; *cells gets this rank's rows
 * of /cells (its planes, in plane then id order: rank order is plane order), *nmasks (every
 * rank) the number of masks (stitched: the largest id). The caller writes the cells and the
 * attributes and commits *h (or aborts it on a later failure). On failure *h is NULL (aborted).
 * Failures are agreed (cp_agree). */
int cp_dstack_run(cp_dstack *s, cp_h5out **h, cp_cell **cells, int64_t *ncells,
                  int64_t *nmasks, char *err);

#endif
