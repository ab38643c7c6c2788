/* Image windows reduced to the network's channels (see image.h). */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

int cp_image_open(cp_image *im, const char *path, int z_axis, int channel_axis, int stitch,
                   int chan, int chan2, char *err)
{
    memset(im, 0, sizeof *im);
    im->path = path;
    im->chan = chan, im->chan2 = chan2;
    int rc = cp_tiff_open(path, &im->tif, &im->info, err);
    if (rc) return rc;
    char msg[CP_ERR_LEN];
    rc = cp_layout_decide(im->info.shape, im->info.ndim, z_axis, channel_axis, stitch, chan, chan2,
                          &im->layout, msg);
    if (rc) {
        cp_tiff_close(im->tif);
        im->tif = NULL;
        return cp_errf(err, rc, "%s: %s", path, msg);
    }
    return 0;
}

void cp_image_close(cp_image *im)
{
    if (im->tif) cp_tiff_close(im->tif);
    free(im->page);
    memset(im, 0, sizeof *im);
}

int cp_image_read(cp_image *im, int64_t z, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                   float *x2, char *err)
{
    const cp_layout *L = &im->layout;
    int64_t npix = ny * nx, spp = im->info.spp;
    if (npix * spp > im->page_cap) {
        free(im->page);
        im->page_cap = npix * spp;
        im->page = malloc(sizeof(float) * (size_t)im->page_cap);
    }
    float *raw = malloc(sizeof(float) * (size_t)(npix * L->nc));
    if (!im->page || !raw) {
        free(raw);
        im->page_cap = 0;
        return cp_err_nomem(err, im->path, (int64_t[]){ny, nx, spp + L->nc}, 3, "float32", 4,
                            "for a window and its channels");
    }
    int rc = 0;
    int64_t loaded = -1;
    for (int c = 0; !rc && c < L->nc; c++) {
        int64_t pg = z * L->z_page + c * L->c_page;
        if (pg != loaded) rc = cp_tiff_read_f32(im->tif, pg, y0, x0, ny, nx, im->page, err);
        loaded = pg;
        for (int64_t i = 0; !rc && i < npix; i++) raw[i * L->nc + c] = im->page[i * spp + c * L->c_sample];
    }
    int64_t bad = 0;
    for (int64_t i = 0; !rc && i < npix * L->nc; i++) bad += !isfinite(raw[i]);
    if (!rc && bad)
        rc = cp_errf(err, CP_EDATA, "%s: plane %lld: %lld pixel values are NaN or Inf "
                     "(cellpose-mpi refuses non-finite input; replace them first)", im->path,
                     (long long)z, (long long)bad);
    if (!rc) cp_prep_channels(raw, npix, L->nc, im->chan, im->chan2, x2);
    free(raw);
    return rc;
}
