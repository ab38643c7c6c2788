/* --do_3D over 3-D owner blocks (issue 19; CELLPOSE_ALGORITHM.md §8) on the ranks of a
 * communicator: global percentiles over the volume, the network output of each own block
 * (the block grown by 1 voxel, "dp3", from cp_dnet3_windows: each tile run once per wave of
 * blocks, bit-identical to cp_net3d_window), flow following across blocks
 * (dfollow3.h), raw masks (dmasks3.h), hole filling and min_size (dpost3.h), then the label
 * volume, its /cells and, with --save_flows, the flows, written collectively. The labels are
 * those of the whole-volume engine (cp_segment_volume) for any number of ranks and any block
 * size; no rank holds the volume. With --flows (im NULL) the blocks' field is read from the
 * saved 3-D flows instead of the network. With --no_resample the dynamics run at the network
 * scale and the raw masks are resized to the labels' grid over blocks (dresize3.h) before the
 * hole filling, as cp_segment_volume does. */
#ifndef CP_DVOLUME_H
#define CP_DVOLUME_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "bstore.h"
#include "h5store.h"
#include "image.h"
#include "params.h"
#include "plan.h"
#include "timing.h"

typedef struct cp_dvolume {
    MPI_Comm comm;
    const cp_params *p;
    const cp_plan *plan;                 /* the volume nz x Ly0 x Lx0, rescale, steps, B (a side
                                            of the cubic blocks) */
    const cp_model *m;                   /* NULL with --flows */
    cp_image *im;                        /* the volume (nz >= 2 planes); NULL with --flows */
    const cp_bstore *store;              /* the work folder */
    int resume;                          /* keep the network blocks ("dp3") that verify */
    const volatile sig_atomic_t *stop;   /* set: stop after the network block in hand */
    const char *out_path;
    cp_timing *tm;
} cp_dvolume;

/* Collective: segments the volume and writes /labels (and /flows, /cellprob with --save_flows)
 * of the output *h it creates; rank 0 gets the 3-D /cells rows in *cells (*ncells), every rank
 * the number of masks in *nmasks (the network blocks kept from a checkpoint are reported on
 * rank 0's progress line).
 * The caller writes the cells and attributes and commits *h; on failure *h is NULL (aborted).
 * Returns 0, CP_EINTR after a stop request in the network phase (finished blocks kept), or the
 * agreed failure. */
int cp_dvolume_run(cp_dvolume *v, cp_h5out **h, cp_cell **cells, int64_t *ncells,
                   int64_t *nmasks, char *err);

#endif
