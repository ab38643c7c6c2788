/* The network phase over owner blocks (DESIGN.md §2.2-2.3, §2.10): for any window of the plane at
 * the dynamics scale, dY, dX and cellprob bit-identical to the whole-plane network phase
 * (src/run_net.c). A window needs the network-scale span its resize back reads, the tiles of the
 * global tile grid touching that span (blended in increasing tile index), and for those tiles the
 * normalized, resized, zero-padded image over their regions: exactly that image window is read.
 * The distributed run writes the "dp" array of every own block; each tile is evaluated once, by
 * one of the ranks needing it (balancing the ranks' counts), which sends each other rank needing
 * it the tile's part over that rank's blocks. */
#ifndef CP_DNET_H
#define CP_DNET_H

#include <signal.h>
#include <stdint.h>

#include "cpnet.h"
#include "dplane.h"
#include "grid.h"
#include "image.h"
#include "prep.h"

typedef struct cp_dnet {
    const cp_model *model;
    cp_image *im; int64_t z;              /* image plane to segment */
    cp_norm norm[2]; int inv[2]; int no_norm;   /* normalization constants (global, given) */
    double rescale; int resample;
    int64_t bsize; double tile_overlap; int augment; int64_t batch_size;
    int resume;                           /* keep "dp" block files that already exist */
    const volatile sig_atomic_t *stop;    /* if set and non-zero after a block is stored, the
                                             rank stops there (CP_EINTR): a checkpoint */
    int progress;                         /* a progress line of the tile evaluations
                                             (progress.h; rank 0's share on N ranks) */
} cp_dnet;

/* The plane size at the dynamics scale: the image size, or the network scale (image size times
 * rescale, truncated) without resample. This is the plane the cp_dplane grid must cover.
 * Errors: the plane is empty at the rescale. */
int cp_dnet_size(const cp_dnet *net, int64_t *ny, int64_t *nx, char *err);

/* Pure (no MPI): dY, dX, cellprob (3, win.ny, win.nx) of a window of the plane at the dynamics
 * scale, bit-identical to the same pixels of cp_run_net on the whole plane. Reads only the image
 * window it needs (cp_image_read). Errors: a window outside the plane, the model's channel
 * count, image read errors, out of memory. */
int cp_dnet_window(const cp_dnet *net, cp_rect win, float *out3, char *err);

/* Counters of a sequence of windows or of a distributed run (summed over ranks). */
typedef struct cp_dnet_stats {
    int64_t reused;      /* blocks whose "dp" file was kept (resume) */
    int64_t tiles_run;   /* tile evaluations done: each tile the windows need, once */
    int64_t tiles_plane; /* tiles of the whole plane's grid (what cp_run_net evaluates) */
    int64_t damaged;     /* resume: "dp" files that failed their checksum, recomputed */
} cp_dnet_stats;

/* Receives window i's (3, ny, nx) values (valid during the call); returns 0 or an error. */
typedef int (*cp_dnet_emit)(void *arg, int64_t i, const float *out3, char *err);

/* Pure (no MPI): windows wins[0..n) in order, each handed to emit, with the values of
 * cp_dnet_window. Each tile is evaluated once, when the first window needing it comes; its parts
 * over later windows (cp_tiles_crop) are kept until they are blended: memory is the parts of
 * evaluated tiles over windows still to come (for windows row by row, about one row of tile
 * overlap across the plane), not whole tiles. st (may be NULL) gets tiles_run and tiles_plane.
 * Errors: as cp_dnet_window, or emit's, prefixed by the window. */
int cp_dnet_windows(const cp_dnet *net, const cp_rect *wins, int64_t n, cp_dnet_emit emit,
                    void *arg, cp_dnet_stats *st, char *err);

/* Collective: writes "dp" (the block grown by 1 px) for every own block of d; with resume,
 * blocks whose "dp" file exists with the right size and checksum are skipped; *reused counts them
 * (summed over ranks). A file of the right size that fails its checksum is recomputed, and its
 * owner prints "resume: block (by,bx) 'dp': checksum mismatch, recomputed". d's grid must be the
 * plane of cp_dnet_size. The ranks go through their blocks in rounds (the t-th block of every
 * rank in round t; odd ranks take theirs backwards, so that neighbours reach the blocks they share
 * tiles with together); a tile is evaluated in the round of the first block needing it, by its
 * owner, and its parts travel point to point (nonblocking sends, receives in an order every rank
 * plans alike). A rank that fails or stops (net->stop) evaluates nothing more and sends empty
 * messages in place of its parts; a rank receiving one stops too (no error of its own), so no
 * rank waits for ever. Every rank returns the agreed status (cp_agree). */
int cp_dnet_run(const cp_dplane *d, const cp_dnet *net, int64_t *reused, char *err);
/* The same, reporting every counter (st may not be NULL). */
int cp_dnet_run_stats(const cp_dplane *d, const cp_dnet *net, cp_dnet_stats *st, char *err);

#endif
