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

/* Runs every tile of the grid of nimg images img (nimg, 2, Ly, Lx) through the net in batches
 * (a batch may span images) and blends each image's tiles onto its canvas acc (nimg, nout, Ey,
 * Ex) and weights w (nimg, Ey, Ex) in tile order, counting tiles in pr. */
static int run_tiles(const cp_model *m, const cp_tile_grid *g, const float *img, int64_t nimg,
                     int64_t batch, float *acc, double *w, cp_progress *pr, char *err)
{
    const cp_model_info *mi = cp_model_get_info(m);
    int64_t per = g->ny * g->nx, ntiles = nimg * per, tsz = g->ty * g->tx;
    int64_t isz = g->Ly * g->Lx, csz = g->Ey * g->Ex;
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
            int64_t i = (k0 + b) / per, k = (k0 + b) % per;
            cp_tiles_extract(g, k, img + i * mi->nchan * isz, 0, 0, g->Ly, g->Lx, mi->nchan,
                             in + b * mi->nchan * tsz);
        }
        rc = cp_net_forward(m, in, (int)nb, (int)g->ty, (int)g->tx, out, NULL, err);
        for (int64_t b = 0; !rc && b < nb; b++) {
            int64_t i = (k0 + b) / per, k = (k0 + b) % per;
            float *o = out + b * mi->nout * tsz;
            if (g->augment) cp_tiles_unflip(g, k, o, mi->nout);
            cp_tiles_accumulate(g, k, o, mi->nout, acc + i * mi->nout * csz, w + i * csz, 0, 0,
                                g->Ey, g->Ex);
        }
        if (!rc) cp_progress_add(pr, nb);
    }
    free(in);
    free(out);
    return rc;
}

/* The tile grid of an image Lyr x Lxr at the network scale, padded (§2.4); by, bx: the padding
 * before the image. */
static int plan_image(int64_t Lyr, int64_t Lxr, int64_t bsize, double overlap, int augment,
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
    if (plan_image(Lyr, Lxr, bsize, overlap, augment, &g, &by, &bx, err)) return 0;
    int64_t n = g.ny * g.nx;
    cp_tiles_free(&g);
    return n;
}

int cp_net_images(const cp_model *m, const float *x2, int64_t nimg, int64_t Lyr, int64_t Lxr,
                  int64_t bsize, double overlap, int augment, int64_t batch, float *out,
                  cp_progress *pr, char *err)
{
    int nout = cp_model_get_info(m)->nout;
    cp_tile_grid g;
    int64_t by, bx;
    int rc = plan_image(Lyr, Lxr, bsize, overlap, augment, &g, &by, &bx, err);
    if (rc) return rc;
    int64_t isz = g.Ly * g.Lx, csz = g.Ey * g.Ex, npix = Lyr * Lxr;
    float *img = calloc((size_t)(nimg * 2 * isz), sizeof *img);
    float *acc = calloc((size_t)(nimg * nout * csz), sizeof *acc);
    double *w = calloc((size_t)(nimg * csz), sizeof *w);
    rc = (img && acc && w) ? 0 : cp_errf(err, CP_ENOMEM, "network: out of memory");
    if (!rc) {
        /* the zero-padded network inputs (2, Ly, Lx) channel-first */
        for (int64_t i = 0; i < nimg; i++)
            for (int64_t y = 0; y < Lyr; y++)
                for (int64_t x = 0; x < Lxr; x++)
                    for (int c = 0; c < 2; c++)
                        img[((i * 2 + c) * g.Ly + by + y) * g.Lx + bx + x] =
                            x2[((i * Lyr + y) * Lxr + x) * 2 + c];
        rc = run_tiles(m, &g, img, nimg, batch, acc, w, pr, err);
    }
    for (int64_t i = 0; !rc && i < nimg; i++) {
        float *a = acc + i * nout * csz;
        cp_tiles_finish(a, w + i * csz, nout, csz);
        for (int c = 0; c < 3; c++)
            for (int64_t y = 0; y < Lyr; y++)
                memcpy(out + (i * 3 + c) * npix + y * Lxr, a + (c * g.Ey + by + y) * g.Ex + bx,
                       sizeof(float) * (size_t)Lxr);
    }
    free(img);
    free(acc);
    free(w);
    cp_tiles_free(&g);
    return rc;
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
