/* The network grid (CELLPOSE_ALGORITHM.md §2.4, §3.3-3.5): padding amounts, Cellpose's tile
 * starts (np.linspace(...).astype(int)), the f64 taper mask, tile extraction with augment flips,
 * un-flipping, and the taper-weighted blend in tile-index order on any window of the canvas. */
#include "tiles.h"

#include "cp_err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cp_pad_amounts(int64_t L, int64_t *before, int64_t *after)
{
    int64_t pad = 16 * ((L + 15) / 16) - L;
    *before = 8 + pad / 2;
    *after = 8 + pad - pad / 2;
}

/* np.linspace(0, span, n).astype(int): trunc(j * (span / (n - 1))), the last exactly span. */
static void starts(int64_t span, int64_t n, int64_t *s)
{
    if (n == 1) {
        s[0] = 0;
        return;
    }
    double step = (double)span / (double)(n - 1);
    for (int64_t j = 0; j < n - 1; j++) s[j] = (int64_t)((double)j * step);
    s[n - 1] = span;
}

static int64_t tiles_per_axis(int64_t L, int64_t bsize, double ov, int augment)
{
    if (augment) {
        int64_t n = (int64_t)ceil(2.0 * (double)L / (double)bsize);
        return n > 2 ? n : 2;
    }
    if (L <= bsize) return 1;
    return (int64_t)ceil((1.0 + 2 * ov) * (double)L / (double)bsize);
}

/* Cellpose's _taper_mask(ty, tx): the centre crop of the outer product of the 1-D sigmoid of a
 * B = max(224, ty, tx) window. */
static void taper(int64_t ty, int64_t tx, double *out, double *m)
{
    int64_t B = ty > tx ? ty : tx;
    if (B < 224) B = 224;
    double mean = (double)(B - 1) / 2.0;
    for (int64_t k = 0; k < B; k++)
        m[k] = 1.0 / (1.0 + exp((fabs((double)k - mean) - ((double)B / 2.0 - 20.0)) / 7.5));
    int64_t oy = B / 2 - ty / 2, ox = B / 2 - tx / 2;
    for (int64_t a = 0; a < ty; a++)
        for (int64_t b = 0; b < tx; b++) out[a * tx + b] = m[oy + a] * m[ox + b];
}

int cp_tiles_plan(int64_t Ly, int64_t Lx, int64_t bsize, double overlap, int augment,
                  cp_tile_grid *g, char *err)
{
    memset(g, 0, sizeof *g);
    if (bsize < 16 || bsize % 16 || Ly < 1 || Lx < 1)
        return cp_errf(err, CP_EPARAM, "tiles: bsize %lld (multiple of 16 needed) for a %lldx%lld "
                       "image", (long long)bsize, (long long)Ly, (long long)Lx);
    double ov = overlap < 0.05 ? 0.05 : (overlap > 0.5 ? 0.5 : overlap);
    g->Ly = Ly;
    g->Lx = Lx;
    g->augment = augment;
    g->ny = tiles_per_axis(Ly, bsize, ov, augment);
    g->nx = tiles_per_axis(Lx, bsize, ov, augment);
    if (augment) {
        g->ty = g->tx = bsize;
        g->Ey = Ly > bsize ? Ly : bsize;
        g->Ex = Lx > bsize ? Lx : bsize;
    } else {
        g->ty = Ly < bsize ? Ly : bsize;
        g->tx = Lx < bsize ? Lx : bsize;
        g->Ey = Ly;
        g->Ex = Lx;
    }
    int64_t B = g->ty > g->tx ? g->ty : g->tx;
    g->ystart = malloc((size_t)g->ny * sizeof *g->ystart);
    g->xstart = malloc((size_t)g->nx * sizeof *g->xstart);
    g->taper = malloc((size_t)(g->ty * g->tx) * sizeof *g->taper);
    double *m = malloc((size_t)(B > 224 ? B : 224) * sizeof *m);
    if (!g->ystart || !g->xstart || !g->taper || !m) {
        free(m);
        cp_tiles_free(g);
        return cp_errf(err, CP_ENOMEM, "tiles: cannot allocate the tile grid");
    }
    starts(g->Ey - g->ty, g->ny, g->ystart);
    starts(g->Ex - g->tx, g->nx, g->xstart);
    taper(g->ty, g->tx, g->taper, m);
    free(m);
    return 0;
}

void cp_tiles_free(cp_tile_grid *g)
{
    free(g->ystart);
    free(g->xstart);
    free(g->taper);
    g->ystart = g->xstart = NULL;
    g->taper = NULL;
}

/* Augment flips of tile k (§3.5): rows reversed for (even j, odd i) and (odd, odd), columns for
 * (odd j, even i) and (odd, odd). */
static void tile_flips(const cp_tile_grid *g, int64_t k, int *fy, int *fx)
{
    int64_t j = k / g->nx, i = k % g->nx;
    *fy = g->augment && (i % 2 == 1);
    *fx = g->augment && (j % 2 == 1);
}

void cp_tiles_extract(const cp_tile_grid *g, int64_t k, const float *img, int64_t wy0,
                      int64_t wx0, int64_t wny, int64_t wnx, int nchan, float *tile)
{
    int64_t y0 = g->ystart[k / g->nx], x0 = g->xstart[k % g->nx];
    int fy, fx;
    tile_flips(g, k, &fy, &fx);
    for (int c = 0; c < nchan; c++)
        for (int64_t a = 0; a < g->ty; a++) {
            int64_t y = y0 + (fy ? g->ty - 1 - a : a);
            float *o = tile + (c * g->ty + a) * g->tx;
            if (y >= g->Ly) {
                memset(o, 0, (size_t)g->tx * sizeof *o);
                continue;
            }
            const float *row = img + (c * wny + (y - wy0)) * wnx;
            for (int64_t b = 0; b < g->tx; b++) {
                int64_t x = x0 + (fx ? g->tx - 1 - b : b);
                o[b] = x < g->Lx ? row[x - wx0] : 0.0f;
            }
        }
}

void cp_tiles_unflip(const cp_tile_grid *g, int64_t k, float *out, int nout)
{
    int fy, fx;
    tile_flips(g, k, &fy, &fx);
    int64_t ty = g->ty, tx = g->tx;
    for (int c = 0; c < nout; c++) {
        float *p = out + c * ty * tx;
        if (fy)
            for (int64_t a = 0; a < ty / 2; a++)
                for (int64_t b = 0; b < tx; b++) {
                    float t = p[a * tx + b];
                    p[a * tx + b] = p[(ty - 1 - a) * tx + b];
                    p[(ty - 1 - a) * tx + b] = t;
                }
        if (fx)
            for (int64_t a = 0; a < ty; a++)
                for (int64_t b = 0; b < tx / 2; b++) {
                    float t = p[a * tx + b];
                    p[a * tx + b] = p[a * tx + tx - 1 - b];
                    p[a * tx + tx - 1 - b] = t;
                }
        if ((c == 0 && fy) || (c == 1 && fx))
            for (int64_t i = 0; i < ty * tx; i++) p[i] = -p[i];
    }
}

int cp_tiles_clip(const cp_tile_grid *g, int64_t k, int64_t wy0, int64_t wx0, int64_t wny,
                  int64_t wnx, int64_t *y0, int64_t *y1, int64_t *x0, int64_t *x1)
{
    int64_t ty0 = g->ystart[k / g->nx], tx0 = g->xstart[k % g->nx];
    *y0 = ty0 > wy0 ? ty0 : wy0;
    *y1 = ty0 + g->ty < wy0 + wny ? ty0 + g->ty : wy0 + wny;
    *x0 = tx0 > wx0 ? tx0 : wx0;
    *x1 = tx0 + g->tx < wx0 + wnx ? tx0 + g->tx : wx0 + wnx;
    return *y0 < *y1 && *x0 < *x1;
}

/* Tile k's output over canvas rows [oy0, oy0+ony) x columns [ox0, ox0+onx) in src (nout, ony,
 * onx), added over its intersection with the window (which src must cover): §3.4. */
static void accumulate_from(const cp_tile_grid *g, int64_t k, const float *src, int64_t oy0,
                            int64_t ox0, int64_t ony, int64_t onx, int nout, float *acc,
                            double *w, int64_t wy0, int64_t wx0, int64_t wny, int64_t wnx)
{
    int64_t y0, y1, x0, x1;
    if (!cp_tiles_clip(g, k, wy0, wx0, wny, wnx, &y0, &y1, &x0, &x1)) return;
    int64_t ty0 = g->ystart[k / g->nx], tx0 = g->xstart[k % g->nx];
    for (int64_t y = y0; y < y1; y++) {
        const double *tp = g->taper + (y - ty0) * g->tx;
        double *wr = w + (y - wy0) * wnx;
        for (int64_t x = x0; x < x1; x++) wr[x - wx0] += tp[x - tx0];
        for (int c = 0; c < nout; c++) {
            const float *s = src + (c * ony + (y - oy0)) * onx;
            float *dst = acc + (c * wny + (y - wy0)) * wnx;
            for (int64_t x = x0; x < x1; x++)
                dst[x - wx0] = (float)((double)dst[x - wx0] + (double)s[x - ox0] * tp[x - tx0]);
        }
    }
}

void cp_tiles_accumulate(const cp_tile_grid *g, int64_t k, const float *out, int nout,
                         float *acc, double *w, int64_t wy0, int64_t wx0, int64_t wny,
                         int64_t wnx)
{
    accumulate_from(g, k, out, g->ystart[k / g->nx], g->xstart[k % g->nx], g->ty, g->tx, nout,
                    acc, w, wy0, wx0, wny, wnx);
}

void cp_tiles_crop(const cp_tile_grid *g, int64_t k, const float *out, int nout, int64_t wy0,
                   int64_t wx0, int64_t wny, int64_t wnx, float *part)
{
    int64_t y0, y1, x0, x1;
    if (!cp_tiles_clip(g, k, wy0, wx0, wny, wnx, &y0, &y1, &x0, &x1)) return;
    int64_t ty0 = g->ystart[k / g->nx], tx0 = g->xstart[k % g->nx], n = x1 - x0;
    for (int c = 0; c < nout; c++)
        for (int64_t y = y0; y < y1; y++)
            memcpy(part + (c * (y1 - y0) + y - y0) * n,
                   out + (c * g->ty + y - ty0) * g->tx + x0 - tx0, sizeof(float) * (size_t)n);
}

void cp_tiles_accumulate_part(const cp_tile_grid *g, int64_t k, const float *part, int nout,
                              float *acc, double *w, int64_t wy0, int64_t wx0, int64_t wny,
                              int64_t wnx)
{
    int64_t y0, y1, x0, x1;
    if (!cp_tiles_clip(g, k, wy0, wx0, wny, wnx, &y0, &y1, &x0, &x1)) return;
    accumulate_from(g, k, part, y0, x0, y1 - y0, x1 - x0, nout, acc, w, wy0, wx0, wny, wnx);
}

void cp_tiles_finish(float *acc, const double *w, int nout, int64_t npix)
{
    for (int c = 0; c < nout; c++) {
        float *p = acc + c * npix;
        for (int64_t i = 0; i < npix; i++) p[i] = (float)((double)p[i] / w[i]);
    }
}

int64_t cp_tiles_touching(const cp_tile_grid *g, int64_t wy0, int64_t wx0, int64_t wny,
                          int64_t wnx, int64_t *list)
{
    /* a tile meets the window when its rows and its columns do: row-major over both ranges */
    int64_t ky0 = g->ny, ky1 = 0, kx0 = g->nx, kx1 = 0, n = 0, y0, y1, x0, x1;
    for (int64_t ky = 0; ky < g->ny; ky++)
        if (cp_tiles_clip(g, ky * g->nx, wy0, g->xstart[0], wny, 1, &y0, &y1, &x0, &x1))
            ky0 = ky < ky0 ? ky : ky0, ky1 = ky + 1;
    for (int64_t kx = 0; kx < g->nx; kx++)
        if (cp_tiles_clip(g, kx, g->ystart[0], wx0, 1, wnx, &y0, &y1, &x0, &x1))
            kx0 = kx < kx0 ? kx : kx0, kx1 = kx + 1;
    for (int64_t ky = ky0; ky < ky1; ky++)
        for (int64_t kx = kx0; kx < kx1; kx++) {
            if (list) list[n] = ky * g->nx + kx;
            n++;
        }
    return n;
}
