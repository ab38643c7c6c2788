/* A run's plan (DESIGN.md §1): what every phase needs that follows from the parameters and the
 * size of the input, resolved once, before any phase runs, by cp_plan_image or cp_plan_flows, and
 * handed to the phases — so that the rescale, the niter rule, the network geometry, the plane at
 * the dynamics scale and the block side are each decided in one place. */
#ifndef CP_PLAN_H
#define CP_PLAN_H

#include <stdint.h>

#include "dnet.h"
#include "params.h"

/* Default block sides. A plane: 2048 pixels (a plane up to 2048 x 2048 is one block). A volume:
 * the largest power of two B from 32 to 1024 whose memory in proportion to the block,
 * BLOCK3_BYTES x B^3, fits BLOCK3_BUDGET per rank: 128 voxels (148 MiB; 256 would need 1.2 GB).
 * BLOCK3_BYTES is the measured growth of a rank's peak RSS per voxel of its blocks
 * (bench/block_memory.py: 104 MiB with blocks of 64, 234 MiB with 128; docs/performance.md):
 * the network output and its windows, the particles of two blocks, the masks' scratch. Beside it
 * a rank holds the libraries, the model and one network call's tiles, which do not grow with B
 * (about 85 MiB with the tiny model). */
#define DEFAULT_BLOCK 2048
#define BLOCK3_BUDGET ((int64_t)512 << 20)
#define BLOCK3_BYTES 74
/* A wave of the 3-D network over blocks (mpi/dnet3.h): the blocks of a rank whose voxels make
 * up to NET3_WAVE_VOXELS (32 blocks of 128), so its tiles run once per 64 Mi voxels per rank; the
 * scratch file of a wave takes 36 bytes per voxel of its grown blocks (about 2.4 GB per rank in
 * the work folder at most); the blocks are checkpointed at the end of each wave. */
#define NET3_WAVE_VOXELS ((int64_t)64 << 20)

typedef struct cp_plan {
    int64_t nz;        /* planes (1: a plane; > 1: a stack, segmented plane by plane) */
    int64_t Ly0, Lx0;  /* a plane of the input: the labels are written at this size */
    int64_t Ly, Lx;    /* a plane at the dynamics scale: the input's, or the network scale with
                          --no_resample and a rescale other than 1 (cp_dnet_size) */
    double rescale;    /* network input scale (cp_rescale); 1 for saved flows */
    int32_t steps;     /* flow-following iterations: the niter rule (cp_niter_steps), or --niter
                          (200 if not given) for saved flows */
    int64_t B;         /* owner block side of a plane: --block, or DEFAULT_BLOCK halved (not below
                          256) until every rank has a block; a plane of a stack is on one rank.
                          Of a --do_3D volume: the side of cubic blocks, --block or the
                          budget's block halved (not below 32) until every rank has a block */
    int do3d;          /* --do_3D: the volume over 3-D blocks (dvolume.h) */
    int stitch;        /* a stack stitched by IoU (--stitch_threshold > 0, nz > 1) */
    int64_t min_size;  /* per plane: --min_size, or -1 when stitched (min_size then in 3-D) */
    cp_dnet net;       /* the network's geometry and inputs (model NULL for saved flows); per
                          run the caller sets im, z, norm, inv, resume, stop, progress */
} cp_plan;

/* The plan of image `im` (nz planes of ny x nx) with model m on nranks ranks. Errors: the plane
 * is empty at the rescale (CP_EPARAM). */
int cp_plan_image(cp_plan *pl, const cp_params *p, const cp_model *m, cp_image *im, int nranks,
                  char *err);

/* The plan of saved flows of nz planes of Ly x Lx on nranks ranks (no network). */
void cp_plan_flows(cp_plan *pl, const cp_params *p, int64_t nz, int64_t Ly, int64_t Lx,
                   int nranks);

#endif
