/* The one driver for one image on all ranks of a communicator, one process included (DESIGN.md
 * §1, §4):
 *   a 2-D plane is decomposed into owner blocks (one block when it fits the default): global
 *   percentiles, network per block, particle rounds, seeds, per-mask steps at owners, then one
 *   collective HDF5 write;
 *   a stack has contiguous planes per rank (each plane by the per-plane engine of
 *   src/segment.h), kept in the work folder and stitched where they are when --stitch_threshold
 *   is given (dstack.h);
 *   a volume with --do_3D on N ranks (or with --block) is decomposed into cubic owner blocks
 *   (dvolume.h); on one process without --block it goes whole to the 3-D engine of
 *   src/segment.h.
 * Labels are identical for any number of ranks and any block size.
 * Block state lives in <output>.work (resumable; removed after success unless --keep_work). */
#ifndef CP_DSEGMENT_H
#define CP_DSEGMENT_H

#include <mpi.h>

#include "cpnet.h"
#include "params.h"
#include "timing.h"

/* Collective over comm. Returns 0, CP_EINTR after a clean checkpoint on SIGTERM/SIGUSR1, or a
 * failure agreed by all ranks (message prefixed with the failing rank). */
int cp_dsegment_image(MPI_Comm comm, const cp_params *p, const cp_model *m,
                      const char *model_path, const char *image, const char *out_path,
                      const char *cmdline, cp_timing *tm, char *err);

/* Masks from saved flows (--flows), collective like the above: one plane over blocks, a stack by
 * planes (dstack.h). */
int cp_dsegment_flows(MPI_Comm comm, const cp_params *p, const char *out_path,
                      const char *cmdline, cp_timing *tm, char *err);

/* Asks the running segmentation to checkpoint and stop at the next block boundary (signal-safe). */
void cp_dsegment_request_stop(void);

#endif
