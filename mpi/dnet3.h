/* The 3-D network phase over owner blocks, each tile evaluated once per wave (issue 19; dnet.h's
 * scheme in 3-D, DESIGN.md §2.2). Every rank asks for windows (boxes of the output grid, e.g. its
 * grown blocks); each window gets the bits cp_net3d_window gives it, but a tile of a pass (plane,
 * tile index of the pass's image grid, the same grid for every plane) that several windows of a
 * wave need is run once.
 *
 * The windows go in waves of up to `wave` windows of every rank (odd ranks take theirs from the
 * end, so that neighbouring ranks' windows meet in one wave). For each pass the wave's planes go
 * in steps of as many planes as fill a batch of tiles. In a step every tile a window of the wave
 * needs is run by one rank needing it (the one with the fewest runs so far, ties to the lowest
 * rank: every rank plans alike, nothing is negotiated), which crops its output to each window's
 * image rect (cp_tiles_crop); one all-to-all moves the parts. A window blends its parts of a
 * plane in increasing tile index and writes the plane's image to the rank's scratch file. At
 * the end of the wave each own window's images are added to its summed field in pass order
 * (cp_view_add), then resized back, smoothed and cropped (cp_net3d_window_finish): the
 * operations of cp_net3d_window in the same order, so the same bits.
 *
 * Memory per rank: one step's input slab, tiles and parts, then one window's summed field at a
 * time (28 bytes per network-scale voxel of its box) -- not the wave. Disk: the scratch file
 * holds the wave's own windows' three pass images, 36 bytes per network-scale voxel of their
 * boxes; it is removed at the end of each wave. Tiles shared by windows of different waves are
 * run again in each; a wave is also the unit of checkpointing (its windows are emitted at its
 * end). */
#ifndef CP_DNET3_H
#define CP_DNET3_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "net3d_window.h"

typedef struct cp_dnet3_stats {
    int64_t tiles_run;    /* tile evaluations, all ranks */
    int64_t tiles_volume; /* the tiles cp_run_net3d runs on the whole volume */
} cp_dnet3_stats;

/* Receives window j's (4, ws[j].n) field: dZ, dY, dX, cellprob (valid during the call). */
typedef int (*cp_dnet3_emit)(void *arg, int64_t j, const float *out4, char *err);

/* Collective over comm: windows ws[0..n) of this rank (any n, 0 included), each handed to emit
 * with the bits of cp_net3d_window(m, rd, arg, L, p, ws[j]), at the end of its wave (`wave`
 * windows per rank, at least 1). rd reads the normalized volume L on every rank (any box).
 * scratch: an existing folder for this rank's scratch file. A rank that fails, or sees *stop set
 * (may be NULL), stops at the next step, and every rank returns the agreed status (cp_agree);
 * windows emitted before stay emitted. A "network" progress counts this rank's tile runs. st
 * (may be NULL): the counters. Errors: cp_net3d_window's, CP_EIO (the scratch), CP_EINTR,
 * emit's. */
int cp_dnet3_windows(MPI_Comm comm, const cp_model *m, cp_net3d_reader rd, void *arg,
                     const int64_t L[3], const cp_net3d_params *p, const cp_box3 *ws, int64_t n,
                     int64_t wave, const char *scratch, const volatile sig_atomic_t *stop,
                     cp_dnet3_emit emit, void *earg, cp_dnet3_stats *st, char *err);

#endif
