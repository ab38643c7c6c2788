/* The network phase of one plane (CELLPOSE_ALGORITHM.md §2.3-3.6): normalized image -> resize to
 * the network scale -> pad -> tiles through CPnet in batches -> taper-weighted blend -> crop ->
 * resize back (resample) -> dP and cellprob at the dynamics scale. */
#ifndef CP_RUN_NET_H
#define CP_RUN_NET_H

#include <stdint.h>

#include "cpnet.h"
#include "progress.h"
#include "tiles.h"

typedef struct cp_net_out {
    int64_t ny, nx;  /* dynamics scale: the image size, or the network scale without resample */
    float *dP;       /* (2, ny, nx): dY plane, dX plane */
    float *cellprob; /* (ny, nx) */
} cp_net_out;

/* rescale: from cp_rescale(); x2: (Ly, Lx, 2) normalized. On success out holds malloc'ed arrays
 * (free with cp_net_out_free). Errors: image too small for the rescale, out of memory;
 * CP_EINTR ("in the network phase (tile K of N)") when a stop was requested (stop.h) between
 * two tile batches. */
int cp_run_net(const cp_model *m, const float *x2, int64_t Ly, int64_t Lx, double rescale,
               int resample, int64_t bsize, double tile_overlap, int augment, int64_t batch_size,
               cp_net_out *out, char *err);
void cp_net_out_free(cp_net_out *o);

/* The network on nimg images of one size at their own scale (§2.4-3.5, no resize): x2 holds the
 * images (Lyr, Lxr, 2) normalized one after another -> zero padding to the 16-grid -> tiles of
 * bsize through CPnet in batches of `batch` tiles (a batch may span images, as Cellpose batches
 * the tiles of a stack) -> taper-weighted blend per image -> crop -> out: per image (3, Lyr, Lxr)
 * channel-first (dY, dX, cellprob; for the 3-D passes the rows and columns of whatever plane the
 * image is), allocated by the caller. An image's bits do not depend on nimg or batch. Tiles are
 * counted in pr (may be NULL). Memory besides out, per image: the padded input (2 f32 per padded
 * pixel) and the canvas over the image (3 f32 + 1 f64 per pixel); plus one batch of tiles in and
 * out. Errors:
 * CP_ENOMEM; CP_EINTR when a stop was requested. */
int cp_net_images(const cp_model *m, const float *x2, int64_t nimg, int64_t Lyr, int64_t Lxr,
                  int64_t bsize, double overlap, int augment, int64_t batch, float *out,
                  cp_progress *pr, char *err);
/* The rect cover (y0, x0, ny, nx) of an Lyr x Lxr image that the network output over the window
 * win (y0, x0, ny, nx) of the image reads: the image part of the tiles touching the window on the
 * canvas (all tiles for the whole image); *ntiles (may be NULL): their count per image. Errors:
 * CP_EPARAM (a window outside the image, bad tiling parameters). */
int cp_net_window_cover(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment,
                        const int64_t win[4], int64_t cover[4], int64_t *ntiles, char *err);
/* cp_net_images over the window win of each image: x2 holds per image only the input over its
 * rect cover (cp_net_window_cover), (cover ny, cover nx, 2); out receives per image (3, win ny,
 * win nx), bit-identical to the same pixels of cp_net_images (only the tiles touching the window
 * are run, blended in increasing index). Memory: the padded input over the tiles, the canvas
 * over the window, one batch of tiles. cp_net_images is this call on the whole image. */
int cp_net_images_window(const cp_model *m, const float *x2, int64_t nimg, int64_t Lyr,
                         int64_t Lxr, int64_t bsize, double overlap, int augment, int64_t batch,
                         const int64_t win[4], float *out, cp_progress *pr, char *err);
/* The tile grid g (cp_tiles_free it) of an image Lyr x Lxr at the network scale, zero-padded
 * (§2.4); *by, *bx: the padding before the image, so image pixel (y, x) is canvas pixel
 * (y + *by, x + *bx). Errors: cp_tiles_plan's. */
int cp_net_image_grid(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment,
                      cp_tile_grid *g, int64_t *by, int64_t *bx, char *err);
/* Tiles cp_net_images runs per image of Lyr x Lxr (0 if the parameters are invalid). */
int64_t cp_net_image_tiles(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment);

/* rescale of §1.2: diameter > 0 -> (double)diam_mean / diameter in f64; diameter 0 -> the model's
 * (float)(diam_mean / diam_labels), one f32 division, widened. */
double cp_rescale(double diameter, float diam_mean, float diam_labels);
/* Dynamics steps of §4.1: niter > 0 as given; else 200, or (1.0 / rescale) * 200.0 truncated when
 * resampling. */
int64_t cp_niter_steps(int64_t niter, double rescale, int resample);

#endif
