/* The network grid (CELLPOSE_ALGORITHM.md §2.4, §3.3-3.5): padding to multiples of 16, the tile
 * grid with its taper mask, tile extraction (with augment flips) and the ordered, taper-weighted
 * blending of tile outputs. Blending works on any output window: contributions are added in
 * tile-index order, so a window gives the same bits as the whole image (DESIGN.md §2.2). */
#ifndef CP_TILES_H
#define CP_TILES_H

#include <stdint.h>

/* Padding of an axis of length L: before = 8 + pad/2, after = 8 + pad - pad/2, pad to 16. */
void cp_pad_amounts(int64_t L, int64_t *before, int64_t *after);

typedef struct cp_tile_grid {
    int64_t Ly, Lx;      /* padded image size */
    int64_t Ey, Ex;      /* canvas size (= padded size, except augment on a small axis) */
    int64_t ty, tx;      /* tile size */
    int64_t ny, nx;      /* tiles per axis; tile k = (k / nx, k % nx) */
    int64_t *ystart, *xstart;
    int augment;
    double *taper;       /* ty * tx, f64 */
} cp_tile_grid;

/* Plans the grid of a padded image Ly x Lx. bsize: multiple of 16; overlap in [0.05, 0.5]
 * (validated by the caller). */
int cp_tiles_plan(int64_t Ly, int64_t Lx, int64_t bsize, double overlap, int augment,
                  cp_tile_grid *g, char *err);
void cp_tiles_free(cp_tile_grid *g);

/* Copies tile k of the padded network input img (2, Ly, Lx) channel-first (zeros beyond the
 * image on the augment canvas) into tile (2, ty, tx), flipped as augment requires. img may be a
 * window: it holds rows [wy0, wy0+wny) x columns [wx0, wx0+wnx) of the padded image, and must
 * cover the tile's region intersected with the image. */
void cp_tiles_extract(const cp_tile_grid *g, int64_t k, const float *img, int64_t wy0,
                      int64_t wx0, int64_t wny, int64_t wnx, int nchan, float *tile);

/* Un-flips a network output tile (nout, ty, tx) in place (augment; negates the flows). */
void cp_tiles_unflip(const cp_tile_grid *g, int64_t k, float *out, int nout);

/* Adds tile k's output (nout, ty, tx) times the taper into the window accumulators
 * acc (nout, wny, wnx) float32 and w (wny, wnx) float64 of canvas rows [wy0, wy0+wny) x columns
 * [wx0, wx0+wnx), exactly as §3.4. Call in increasing k for each window. */
void cp_tiles_accumulate(const cp_tile_grid *g, int64_t k, const float *out, int nout,
                         float *acc, double *w, int64_t wy0, int64_t wx0, int64_t wny,
                         int64_t wnx);
/* Tile k's intersection with canvas window [wy0, wy0+wny) x [wx0, wx0+wnx): rows [*y0, *y1),
 * columns [*x0, *x1); 0 if empty. */
int cp_tiles_clip(const cp_tile_grid *g, int64_t k, int64_t wy0, int64_t wx0, int64_t wny,
                  int64_t wnx, int64_t *y0, int64_t *y1, int64_t *x0, int64_t *x1);
/* Tile k's part for a window: its output (nout, ty, tx) over the intersection with the window
 * (cp_tiles_clip) into part (nout, y1-y0, x1-x0). Nothing when they do not meet. */
void cp_tiles_crop(const cp_tile_grid *g, int64_t k, const float *out, int nout, int64_t wy0,
                   int64_t wx0, int64_t wny, int64_t wnx, float *part);
/* cp_tiles_accumulate from tile k's part for the window (cp_tiles_crop): the same bits. */
void cp_tiles_accumulate_part(const cp_tile_grid *g, int64_t k, const float *part, int nout,
                              float *acc, double *w, int64_t wy0, int64_t wx0, int64_t wny,
                              int64_t wnx);
/* acc = (float)((double)acc / w) over the window (w > 0 everywhere on the canvas). */
void cp_tiles_finish(float *acc, const double *w, int nout, int64_t npix);

/* Tiles (indices) whose region intersects canvas window [wy0, wy0+wny) x [wx0, wx0+wnx), in
 * increasing order; returns the count (list may be NULL to count). */
int64_t cp_tiles_touching(const cp_tile_grid *g, int64_t wy0, int64_t wx0, int64_t wny,
                          int64_t wnx, int64_t *list);

#endif
