/* The 3-D network stage (CELLPOSE_ALGORITHM.md §8.4-8.6, do_3D): the normalized volume resized to
 * the network scale (Y, X by rescale; Z by anisotropy * rescale), cut three times into stacks of
 * 2-D images (YX, ZX, ZY), every image run through the 2-D network machinery of run_net.h
 * (padding, tiles of 224, taper blend, crop), the three outputs summed in Cellpose's order into
 * one (dZ, dY, dX, cellprob) field, resized back to the volume grid and optionally smoothed
 * (flow3D_smooth).
 *
 * Memory, for a volume of V voxels and V' at the network scale (V' = V without resize):
 *   x_net (V' x 2 f32) only when the scale differs (else the caller's x_norm is read in place);
 *   the accumulator (4 x V' f32), which is the result when nothing is resized back;
 *   resize back: the result (4 x V f32) plus one channel of scratch (Z' x Y x X f32) at a time;
 *   per group of images run together (at most batch_size images): the images (2 channels), their
 *   outputs (3), padded inputs and canvases (run_net.h), one tile batch -- O(batch_size slices),
 *   never a volume. */
#ifndef CP_NET3D_H
#define CP_NET3D_H

#include <stdint.h>

#include "cpnet.h"
#include "progress.h"
#include "resize.h"

/* Tile size of the three passes: run_3D never receives eval's bsize (§8.1). */
enum { CP_NET3D_BSIZE = 224 };

/* Channels of the summed field (Cellpose's run_3D accumulator order). */
enum { CP_V3_DZ = 0, CP_V3_DY = 1, CP_V3_DX = 2, CP_V3_CELLPROB = 3 };

/* One of the three orthogonal passes over a (Lz, Ly, Lx) volume (§8.5, trap §8.11.5):
 *   pass 0: Z planes of Y x X images, network outputs (dY, dX, cellprob)  [yf_yx.tif]
 *   pass 1: Y planes of Z x X images, network outputs (dZ, dX, cellprob)  [yf_zx.tif; Cellpose
 *           logs it as "ZY"]
 *   pass 2: X planes of Z x Y images, network outputs (dZ, dY, cellprob)  [yf_zy.tif; logged "ZX"]
 * Z is the image height in passes 1 and 2, so it gets the row padding and row tiling. */
typedef struct cp_view {
    int64_t planes, rows, cols;        /* images, image rows, image columns */
    int64_t plane_st, row_st, col_st;  /* their strides in the (Lz, Ly, Lx) volume, voxels */
    int flow[2];                       /* summed-field channels of network outputs 0 and 1 */
} cp_view;

/* The view of pass 0, 1 or 2 over a (Lz, Ly, Lx) volume. */
cp_view cp_view_of(int pass, int64_t Lz, int64_t Ly, int64_t Lx);

/* Image i of view v, from the volume x (Lz, Ly, Lx, 2) interleaved, into x2 (rows, cols, 2). */
void cp_view_image(const cp_view *v, const float *x, int64_t i, float *x2);

/* The box of the volume holding the images' rows [r[0], r[0]+r[2]) x columns [r[1], r[1]+r[3])
 * of planes [p0, p0+pn) of pass `pass` (cp_view_of's axes). */
cp_box3 cp_view_box(int pass, int64_t p0, int64_t pn, const int64_t r[4]);
/* Box a seen by pass `pass`: its planes [*p0, *p0+*pn) and its image rect r (cp_view_box's
 * inverse). */
void cp_view_rect(int pass, cp_box3 a, int64_t *p0, int64_t *pn, int64_t r[4]);

/* Adds the network output of image i -- channel k at y + k * cstride, each (rows, cols) -- to
 * the summed field acc (4, Lz, Ly, Lx) of nvox = Lz*Ly*Lx voxels, in float32 as Cellpose's
 * run_3D does: cellprob += output 2, then the two flow channels of the view. Called for every
 * image of pass 0, then of pass 1, then of pass 2, on an acc that started at zero, it gives
 * cellprob = (yx + zx) + zy, dZ = zx + zy, dY = yx + zy, dX = yx + zx bit for bit (the image
 * order within a pass does not matter). */
void cp_view_add(const cp_view *v, int64_t i, const float *y, int64_t cstride, float *acc,
                 int64_t nvox);

/* Runs pass `pass` of the network over x (L[0], L[1], L[2], 2) at the network scale and adds its
 * outputs to acc (cp_view_add). bsize 224 always (§8.1: eval's bsize is not used in 3-D).
 * view: if not NULL, also receives the pass's raw output (3, planes, rows, cols), the layout of
 * the oracle's yf_* files (tests, diagnostics: a 3 x V' copy). Tiles are counted in pr (may be
 * NULL). The images go to the network in groups of max(1, batch / tiles per image), so that
 * small images (one or two tiles, e.g. Z x X slices of a thin volume) fill a batch as in
 * Cellpose, which batches the tiles of the whole stack. Errors: those of cp_net_images. */
int cp_net3d_pass(const cp_model *m, const float *x, const int64_t L[3], int pass,
                  double tile_overlap, int augment, int64_t batch, float *acc, float *view,
                  cp_progress *pr, char *err);

/* Reads the box b of a two-channel volume into dst (b.n, 2) interleaved; returns 0 or an error
 * (err set). */
typedef int (*cp_net3d_reader)(void *arg, cp_box3 b, float *dst, char *err);

/* cp_net3d_pass over box a of the network-scale volume L, its input read through rd: acc
 * (4, a.n) and view (3, the box's planes, its image rows, columns; may be NULL) receive the same
 * bits as cp_net3d_pass's over those voxels. Only the tiles touching the box's image rect are
 * run, and the input is read one network call's images at a time: the box of their planes over
 * the rect those tiles cover (cp_net_window_cover), so memory is that of one call, whatever the
 * box. cp_net3d_pass is this call on the whole volume. Errors: cp_net3d_pass's, rd's. */
int cp_net3d_pass_box(const cp_model *m, cp_net3d_reader rd, void *arg, const int64_t L[3],
                      int pass, cp_box3 a, double tile_overlap, int augment, int64_t batch,
                      float *acc, float *view, cp_progress *pr, char *err);

typedef struct cp_net3d_params {
    double rescale;      /* cp_rescale() of §1.2; applies to Z too */
    double anisotropy;   /* Z spacing / XY spacing; 1.0 for none */
    int resample;        /* resize the result back to the volume grid */
    double tile_overlap; /* validated by the caller, [0.05, 0.5] */
    int augment;
    int64_t batch_size;
    double smooth;       /* flow3D_smooth sigma; 0 = off */
} cp_net3d_params;

typedef struct cp_net3d_out {
    int64_t nz, ny, nx; /* the volume grid, or the network scale without resample */
    float *dP;          /* (3, nz, ny, nx): dZ, dY, dX; one allocation with cellprob */
    float *cellprob;    /* (nz, ny, nx), = dP + 3 * nz * ny * nx (not freed separately) */
} cp_net3d_out;

/* The network scale Ln of a volume L (§8.4): Ln[0] = trunc((Lz * anisotropy) * rescale),
 * Ln[1..2] = trunc(L * rescale) (f64). Errors: CP_EPARAM when an axis becomes empty. */
int cp_net3d_scale(const int64_t L[3], double rescale, double anisotropy, int64_t Ln[3],
                   char *err);

/* From the summed field acc (4, Ln) (ownership passes to this function, also on error) to out:
 * resized back to L when p->resample (every channel with OpenCV's 4-channel rounding, §8.6),
 * then dP smoothed when p->smooth > 0. Errors: CP_ENOMEM, CP_EPARAM (smooth). */
int cp_net3d_finish(float *acc, const int64_t Ln[3], const int64_t L[3],
                    const cp_net3d_params *p, cp_net3d_out *out, char *err);

/* The whole stage: x (L[0], L[1], L[2], 2) normalized (x_norm, §8.3) -> out (free with
 * cp_net3d_out_free). Reports the tiles of the three passes as one "network" progress phase.
 * Errors: CP_EPARAM (empty network scale, smooth), CP_ENOMEM, CP_EINTR (stop requested). */
int cp_run_net3d(const cp_model *m, const float *x, const int64_t L[3], const cp_net3d_params *p,
                 cp_net3d_out *out, char *err);
void cp_net3d_out_free(cp_net3d_out *o);

#endif
