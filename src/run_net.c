/* The network phase of one plane (see run_net.h). */
#include "run_net.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "progress.h"
#include "resize.h"
#include "stop.h"
#include "tiles.h"

double cp_rescale(double diameter, float diam_mean, float diam_labels)
{
    if (diameter > 0) return (double)diam_mean / diameter;
    return (double)(float)(diam_mean / diam_labels);
}

int64_t cp_niter_steps(int64_t niter, double rescale, int resample)
{
    if (niter > 0) return niter;
    double n0 = resample ? (1.0 / rescale) * 200.0 : 200.0;
    return (int64_t)(uint32_t)n0;
}

void cp_net_out_free(cp_net_out *o)
{
    free(o->dP);
    free(o->cellprob);
    memset(o, 0, sizeof *o);
}

/* Tiles ks[0..nk) of the grid of each of nimg images through the net in batches (a batch may
 * span images), blended in list order onto each image's canvas window acc (nimg, nout, cw[2],
 * cw[3]) and weights w (nimg, cw[2], cw[3]) of canvas rows [cw[0], cw[0]+cw[2]) x columns
 * [cw[1], cw[1]+cw[3]); img (nimg, 2, iw[2], iw[3]) holds the padded inputs over the padded-plane
 * window iw (y0, x0, ny, nx) the tiles read. Tiles are counted in pr. */
static int run_tiles(const cp_model *m, const cp_tile_grid *g, const int64_t *ks, int64_t nk,
                     const float *img, const int64_t iw[4], int64_t nimg, int64_t batch,
                     float *acc, double *w, const int64_t cw[4], cp_progress *pr, char *err)
{
    const cp_model_info *mi = cp_model_get_info(m);
    int64_t ntiles = nimg * nk, tsz = g->ty * g->tx;
    int64_t isz = iw[2] * iw[3], csz = cw[2] * cw[3];
    float *in = malloc(sizeof(float) * (size_t)(batch * mi->nchan * tsz));
    float *out = malloc(sizeof(float) * (size_t)(batch * mi->nout * tsz));
    int rc = (in && out) ? 0 : cp_errf(err, CP_ENOMEM, "network: out of memory for tiles");
    for (int64_t k0 = 0; !rc && k0 < ntiles; k0 += batch) {
        if (cp_stop_requested()) {
            rc = cp_errf(err, CP_EINTR, "in the network phase (tile %lld of %lld)",
                         (long long)k0 + 1, (long long)ntiles);
            break;
        }
        int64_t nb = ntiles - k0 < batch ? ntiles - k0 : batch;
        for (int64_t b = 0; b < nb; b++) {
            int64_t i = (k0 + b) / nk, k = ks[(k0 + b) % nk];
            cp_tiles_extract(g, k, img + i * mi->nchan * isz, iw[0], iw[1], iw[2], iw[3],
                             mi->nchan, in + b * mi->nchan * tsz);
        }
        rc = cp_net_forward(m, in, (int)nb, (int)g->ty, (int)g->tx, out, NULL, err);
        for (int64_t b = 0; !rc && b < nb; b++) {
            int64_t i = (k0 + b) / nk, k = ks[(k0 + b) % nk];
            float *o = out + b * mi->nout * tsz;
            if (g->augment) cp_tiles_unflip(g, k, o, mi->nout);
            cp_tiles_accumulate(g, k, o, mi->nout, acc + i * mi->nout * csz, w + i * csz, cw[0],
                                cw[1], cw[2], cw[3]);
        }
        if (!rc) cp_progress_add(pr, nb);
    }
    free(in);
    free(out);
    return rc;
}

int cp_net_image_grid(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment,
                      cp_tile_grid *g, int64_t *by, int64_t *bx, char *err)
{
    int64_t ay, ax;
    cp_pad_amounts(Lyr, by, &ay);
    cp_pad_amounts(Lxr, bx, &ax);
    return cp_tiles_plan(*by + Lyr + ay, *bx + Lxr + ax, bsize, overlap, augment, g, err);
}

int64_t cp_net_image_tiles(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment)
{
    cp_tile_grid g;
    int64_t by, bx;
    char err[CP_ERR_LEN];
    if (cp_net_image_grid(Lyr, Lxr, bsize, overlap, augment, &g, &by, &bx, err)) return 0;
    int64_t n = g.ny * g.nx;
    cp_tiles_free(&g);
    return n;
}

/* The layout of the network output over window win of an image: its grid (by, bx the padding
 * before the image), the tiles ks[0..nk) it blends (all tiles when win is the whole image, as
 * cp_net_images has always run them; else those touching it), the padded-plane window iw they
 * read and its image part cover (y0, x0, ny, nx). */
typedef struct net_win {
    cp_tile_grid g;
    int64_t by, bx, nk, *ks, iw[4], cover[4];
} net_win;

static int net_win_plan(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment,
                        const int64_t win[4], net_win *q, char *err)
{
    memset(q, 0, sizeof *q);
    if (win[0] < 0 || win[1] < 0 || win[2] < 1 || win[3] < 1 || win[0] + win[2] > Lyr ||
        win[1] + win[3] > Lxr)
        return cp_errf(err, CP_EPARAM, "network: window %lldx%lld at (%lld, %lld) outside the "
                       "%lldx%lld image", (long long)win[2], (long long)win[3],
                       (long long)win[0], (long long)win[1], (long long)Lyr, (long long)Lxr);
    int rc = cp_net_image_grid(Lyr, Lxr, bsize, overlap, augment, &q->g, &q->by, &q->bx, err);
    if (rc) return rc;
    const cp_tile_grid *g = &q->g;
    int whole = win[2] == Lyr && win[3] == Lxr;
    int64_t cy = win[0] + q->by, cx = win[1] + q->bx, nt = g->ny * g->nx;
    q->nk = whole ? nt : cp_tiles_touching(g, cy, cx, win[2], win[3], NULL);
    q->ks = malloc(sizeof(int64_t) * (size_t)(q->nk > 0 ? q->nk : 1));
    if (!q->ks) {
        cp_tiles_free(&q->g);
        return cp_errf(err, CP_ENOMEM, "network: out of memory for a tile list");
    }
    if (whole)
        for (int64_t k = 0; k < nt; k++) q->ks[k] = k;
    else
        cp_tiles_touching(g, cy, cx, win[2], win[3], q->ks);
    int64_t y0 = g->Ly, y1 = 0, x0 = g->Lx, x1 = 0;
    for (int64_t j = 0; j < q->nk; j++) {
        int64_t ys = g->ystart[q->ks[j] / g->nx], xs = g->xstart[q->ks[j] % g->nx];
        int64_t ye = ys + g->ty < g->Ly ? ys + g->ty : g->Ly;
        int64_t xe = xs + g->tx < g->Lx ? xs + g->tx : g->Lx;
        y0 = ys < y0 ? ys : y0, y1 = ye > y1 ? ye : y1;
        x0 = xs < x0 ? xs : x0, x1 = xe > x1 ? xe : x1;
    }
    q->iw[0] = y0, q->iw[1] = x0, q->iw[2] = y1 - y0, q->iw[3] = x1 - x0;
    int64_t cy0 = y0 - q->by < 0 ? 0 : y0 - q->by, cx0 = x0 - q->bx < 0 ? 0 : x0 - q->bx;
    int64_t cy1 = y1 - q->by < Lyr ? y1 - q->by : Lyr, cx1 = x1 - q->bx < Lxr ? x1 - q->bx : Lxr;
    q->cover[0] = cy0, q->cover[1] = cx0, q->cover[2] = cy1 - cy0, q->cover[3] = cx1 - cx0;
    return 0;
}

static void net_win_free(net_win *q)
{
    cp_tiles_free(&q->g);
    free(q->ks);
    memset(q, 0, sizeof *q);
}

int cp_net_window_cover(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment,
                        const int64_t win[4], int64_t cover[4], int64_t *ntiles, char *err)
{
    net_win q;
    int rc = net_win_plan(Lyr, Lxr, bsize, overlap, augment, win, &q, err);
    if (rc) return rc;
    memcpy(cover, q.cover, sizeof q.cover);
    if (ntiles) *ntiles = q.nk;
    net_win_free(&q);
    return 0;
}

int cp_net_images_window(const cp_model *m, const float *x2, int64_t nimg, int64_t Lyr,
                         int64_t Lxr, int64_t bsize, double overlap, int augment, int64_t batch,
                         const int64_t win[4], float *out, cp_progress *pr, char *err)
{
    int nout = cp_model_get_info(m)->nout;
    net_win q;
    int rc = net_win_plan(Lyr, Lxr, bsize, overlap, augment, win, &q, err);
    if (rc) return rc;
    const int64_t *iw = q.iw, *cv = q.cover;
    int64_t cw[4] = {win[0] + q.by, win[1] + q.bx, win[2], win[3]};
    int64_t isz = iw[2] * iw[3], csz = cw[2] * cw[3];
    float *img = calloc((size_t)(nimg * 2 * isz), sizeof *img);
    float *acc = calloc((size_t)(nimg * nout * csz), sizeof *acc);
    double *w = calloc((size_t)(nimg * csz), sizeof *w);
    rc = (img && acc && w) ? 0 : cp_errf(err, CP_ENOMEM, "network: out of memory");
    if (!rc) {
        /* the zero-padded network inputs (2, iw ny, iw nx) channel-first over window iw */
        int64_t oy = q.by + cv[0] - iw[0], ox = q.bx + cv[1] - iw[1];
        for (int64_t i = 0; i < nimg; i++)
            for (int64_t y = 0; y < cv[2]; y++)
                for (int64_t x = 0; x < cv[3]; x++)
                    for (int c = 0; c < 2; c++)
                        img[((i * 2 + c) * iw[2] + oy + y) * iw[3] + ox + x] =
                            x2[((i * cv[2] + y) * cv[3] + x) * 2 + c];
        rc = run_tiles(m, &q.g, q.ks, q.nk, img, iw, nimg, batch, acc, w, cw, pr, err);
    }
    for (int64_t i = 0; !rc && i < nimg; i++) {
        float *a = acc + i * nout * csz;
        cp_tiles_finish(a, w + i * csz, nout, csz);
        memcpy(out + i * 3 * csz, a, sizeof(float) * (size_t)(3 * csz));
    }
    free(img);
    free(acc);
    free(w);
    net_win_free(&q);
    return rc;
}

int cp_net_images(const cp_model *m, const float *x2, int64_t nimg, int64_t Lyr, int64_t Lxr,
                  int64_t bsize, double overlap, int augment, int64_t batch, float *out,
                  cp_progress *pr, char *err)
{
    const int64_t win[4] = {0, 0, Lyr, Lxr};
    return cp_net_images_window(m, x2, nimg, Lyr, Lxr, bsize, overlap, augment, batch, win, out,
                                pr, err);
}

int cp_run_net(const cp_model *m, const float *x2, int64_t Ly, int64_t Lx, double rescale,
               int resample, int64_t bsize, double tile_overlap, int augment, int64_t batch_size,
               cp_net_out *out, char *err)
{
    memset(out, 0, sizeof *out);
    int64_t Lyr = Ly, Lxr = Lx;
    float *xr = NULL;
    if (rescale != 1.0) {
        Lyr = (int64_t)((double)Ly * rescale);
        Lxr = (int64_t)((double)Lx * rescale);
        if (Lyr < 1 || Lxr < 1)
            return cp_errf(err, CP_EPARAM, "image %lldx%lld is empty at rescale %g (diameter too "
                           "large?)", (long long)Ly, (long long)Lx, rescale);
        xr = malloc(sizeof(float) * (size_t)(Lyr * Lxr * 2));
        if (!xr) return cp_errf(err, CP_ENOMEM, "network: out of memory");
        cp_resize_bilinear(x2, Ly, Lx, 2, xr, Lyr, Lxr);
    }
    float *crop = malloc(sizeof(float) * (size_t)(3 * Lyr * Lxr));
    int rc = crop ? 0 : cp_errf(err, CP_ENOMEM, "network: out of memory");
    if (!rc) {
        cp_progress pr;
        cp_progress_begin(&pr, "network", "tiles",
                          cp_net_image_tiles(Lyr, Lxr, bsize, tile_overlap, augment));
        rc = cp_net_images(m, xr ? xr : x2, 1, Lyr, Lxr, bsize, tile_overlap, augment,
                           batch_size, crop, &pr, err);
        cp_progress_end(&pr);
    }
    free(xr);
    if (rc) {
        free(crop);
        return rc;
    }
    if (resample && (Lyr != Ly || Lxr != Lx)) {
        float *back = malloc(sizeof(float) * (size_t)(3 * Ly * Lx));
        if (!back) {
            free(crop);
            return cp_errf(err, CP_ENOMEM, "network: out of memory");
        }
        for (int c = 0; c < 3; c++)
            cp_resize_bilinear(crop + c * Lyr * Lxr, Lyr, Lxr, 1, back + c * Ly * Lx, Ly, Lx);
        free(crop);
        crop = back;
        Lyr = Ly, Lxr = Lx;
    }
    out->ny = Lyr, out->nx = Lxr;
    out->dP = crop;
    out->cellprob = malloc(sizeof(float) * (size_t)(Lyr * Lxr));
    if (!out->cellprob) {
        cp_net_out_free(out);
        return cp_errf(err, CP_ENOMEM, "network: out of memory");
    }
    memcpy(out->cellprob, crop + 2 * Lyr * Lxr, sizeof(float) * (size_t)(Lyr * Lxr));
    return 0;
}
