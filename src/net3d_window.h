/* The 3-D network stage over a window (issue 19, first step): dZ, dY, dX, cellprob of any box of
 * the output grid, bit-identical to the same voxels of cp_run_net3d on the whole volume, computed
 * from the input that box needs only (CELLPOSE_ALGORITHM.md §8.4-8.6). The output box is traced
 * back through every stage, each a function of global coordinates:
 *   output box W (the volume grid with resample, else the network scale)
 *   -> flow3D_smooth: W grown by the kernel's reach (reflected at the borders) = box S
 *   -> resize back (resample): the network-scale box A that resizing S reads
 *   -> each pass: A's planes of the pass, only the tiles of each image touching A's image rect
 *      (blended in increasing index), reading those planes over the tiles' rect one network
 *      call's images at a time
 *   -> the network input over each such box: resized (window) from the box of x it reads.
 * Memory: the boxes S and A (4 channels), and the input of one network call's images at a time
 * (cp_net3d_pass_box: 2 channels at the network scale, and at the volume grid where resized) --
 * of the order of the window plus the tiles of one call, never the volume nor its slices.
 * Tiles shared by neighbouring windows are evaluated again by each window. An each-tile-once
 * cache would key a tile by (pass, plane, tile index) -- the tile grid of a pass is the same for
 * all its planes -- and keep the tile's output (or its parts over the windows still to come, as
 * mpi/dnet.c does with cp_tiles_crop) until the last window needing it is done; the blending
 * order (increasing tile index per image) is unchanged, so the bits are too. */
#ifndef CP_NET3D_WINDOW_H
#define CP_NET3D_WINDOW_H

#include <stdint.h>

#include "cpnet.h"
#include "net3d.h"
#include "resize.h"

/* out4 (4, w.n): dZ, dY, dX, cellprob over the box w of the output grid (the volume
 * L with p->resample, else its network scale cp_net3d_scale), bit-identical to the same voxels
 * of cp_run_net3d(m, x, L, p) (dP, then cellprob), for any rescale, anisotropy, resample,
 * tile_overlap, augment and flow3D_smooth. The normalized volume x (L[0], L[1], L[2], 2) is
 * read through rd only, by boxes inside L. No
 * progress is reported. Errors: CP_EPARAM (w empty or outside the grid, an empty network scale,
 * batch_size < 1, a bad smooth sigma), CP_ENOMEM, CP_EINTR (stop requested), rd's errors. */
int cp_net3d_window(const cp_model *m, cp_net3d_reader rd, void *arg, const int64_t L[3],
                    const cp_net3d_params *p, cp_box3 w, float *out4, char *err);

/* The boxes of window w (checked as cp_net3d_window does): Ln the network scale, back whether
 * the field is resized back to L, s the field before smoothing (w grown by flow3D_smooth's
 * reach), a the network-scale box whose summed field (the three passes) gives s. */
typedef struct cp_net3d_boxes {
    int64_t Ln[3];
    int back;
    cp_box3 s, a;
} cp_net3d_boxes;
int cp_net3d_window_boxes(const int64_t L[3], const cp_net3d_params *p, cp_box3 w,
                          cp_net3d_boxes *bx, char *err);

/* The rest of cp_net3d_window from the summed field acc (4, bx->a): resized back, smoothed and
 * cropped to out4 (4, w). Errors: CP_ENOMEM, the smoothing's. */
int cp_net3d_window_finish(const float *acc, const int64_t L[3], const cp_net3d_params *p,
                           cp_box3 w, const cp_net3d_boxes *bx, float *out4, char *err);

/* cp_net3d_reader of the network input at the network scale Ln (arg: a cp_net3d_scaled): boxes
 * of the normalized volume L read through rd (the same box when Ln is L), else resized from the
 * box of it they need (bit-identical to the whole volume resized). */
typedef struct cp_net3d_scaled {
    cp_net3d_reader rd;
    void *arg;
    const int64_t *L, *Ln;
} cp_net3d_scaled;
int cp_net3d_read_scaled(void *arg, cp_box3 b, float *dst, char *err);

#endif
