/* The --save_overlay PNG (see overlay.h): sampled reads of the output's /labels and of the input
 * image, display normalisation, outlines, libpng. */
#include "overlay.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_err.h"
#include "image.h"
#include "labels_in.h"
#include "segment.h"

#define ROW_BUDGET (1 << 20) /* image pixels read at once (about 40 MB of scratch at most) */

void cp_overlay_path(const char *out_path, const char *input, char *buf, size_t len)
{
    cp_sibling_path(out_path, input, "_cp_overlay.png", buf, len);
}

void cp_overlay_size(int64_t ny, int64_t nx, int64_t *oy, int64_t *ox)
{
    int64_t longer = ny > nx ? ny : nx;
    *oy = ny, *ox = nx;
    if (longer <= CP_OVERLAY_MAX) return;
    *oy = (ny * CP_OVERLAY_MAX + longer / 2) / longer;
    *ox = (nx * CP_OVERLAY_MAX + longer / 2) / longer;
    if (*oy < 1) *oy = 1;
    if (*ox < 1) *ox = 1;
}

int64_t cp_overlay_source(int64_t o, int64_t on, int64_t n)
{
    return (2 * o + 1) * n / (2 * on);
}

void cp_overlay_color(uint32_t l, uint8_t rgb[3])
{
    uint32_t h = (uint32_t)(((uint64_t)l * 949u) % 1536u), f = h % 256;
    uint8_t up = (uint8_t)(64 + f * 191 / 255), down = (uint8_t)(255 - f * 191 / 255);
    static const int idx[6][3] = {{0, 1, 2}, {1, 0, 2}, {2, 0, 1}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}};
    /* per sector: which of (255, moving, 64) each of R, G, B takes */
    uint8_t moving = (h / 256) % 2 ? down : up;
    uint8_t v[3] = {255, moving, 64};
    for (int c = 0; c < 3; c++) rgb[c] = v[idx[h / 256][c]];
}

void cp_overlay_outline(const uint32_t *labels, int64_t oy, int64_t ox, uint8_t *rgb)
{
    for (int64_t y = 0; y < oy; y++)
        for (int64_t x = 0; x < ox; x++) {
            int64_t i = y * ox + x;
            uint32_t l = labels[i];
            if (!l) continue;
            int edge = (y > 0 && labels[i - ox] != l) || (y + 1 < oy && labels[i + ox] != l) ||
                       (x > 0 && labels[i - 1] != l) || (x + 1 < ox && labels[i + 1] != l);
            if (edge) cp_overlay_color(l, rgb + 3 * i);
        }
}

/* ---- PNG ------------------------------------------------------------------------------------ */

typedef struct png_msg {
    char text[256];
} png_msg;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_msg *m = png_get_error_ptr(png);
    snprintf(m->text, sizeof m->text, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg;
}

/* The libpng part, on an open file; 0 or -1 with m->text set. Nothing here is modified after
 * setjmp except through pointers, so no local needs to be volatile. */
static int png_encode(FILE *f, const uint8_t *rgb, int64_t oy, int64_t ox, png_msg *m)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, m, on_png_error,
                                              on_png_warning);
    if (!png) {
        snprintf(m->text, sizeof m->text, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        if (!info) snprintf(m->text, sizeof m->text, "out of memory");
        png_destroy_write_struct(&png, info ? &info : NULL);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)ox, (png_uint_32)oy, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < oy; y++) png_write_row(png, rgb + 3 * y * ox);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int cp_overlay_png_write(const char *path, const uint8_t *rgb, int64_t oy, int64_t ox, char *err)
{
    char tmp[CP_PATH_LEN + 16];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return cp_errf(err, CP_EIO, "%s: cannot create (folder missing or not writable?)", tmp);
    png_msg m = {{0}};
    int bad = png_encode(f, rgb, oy, ox, &m);
    if (fclose(f) && !bad) {
        bad = -1;
        snprintf(m.text, sizeof m.text, "write failed (disk full?)");
    }
    if (!bad && rename(tmp, path)) {
        bad = -1;
        snprintf(m.text, sizeof m.text, "cannot rename the .partial file into place");
    }
    if (bad) {
        unlink(tmp);
        return cp_errf(err, CP_EIO, "%s: cannot write the overlay: %s", path, m.text);
    }
    return 0;
}

/* ---- sampled reads -------------------------------------------------------------------------- */

/* Plane z of the image at the picture's pixels into x2 (oy, ox, 2): groups of picture rows read
 * as one window of whole image rows while the window stays within ROW_BUDGET pixels. */
static int read_image(cp_image *im, int64_t z, const int64_t *sy, int64_t oy, const int64_t *sx,
                      int64_t ox, float *x2, char *err)
{
    int64_t nx = im->layout.nx, rows = ROW_BUDGET / nx > 1 ? ROW_BUDGET / nx : 1;
    float *win = malloc(sizeof *win * (size_t)(2 * rows * nx));
    if (!win) return cp_errf(err, CP_ENOMEM, "%s: out of memory for the overlay", im->path);
    int rc = 0;
    for (int64_t a = 0, b; !rc && a < oy; a = b) {
        for (b = a + 1; b < oy && sy[b] - sy[a] < rows; b++) {}
        int64_t y0 = sy[a], h = sy[b - 1] - y0 + 1;
        rc = cp_image_read(im, z, y0, 0, h, nx, win, err);
        for (int64_t i = a; !rc && i < b; i++)
            for (int64_t j = 0; j < ox; j++)
                for (int c = 0; c < 2; c++)
                    x2[2 * (i * ox + j) + c] = win[2 * ((sy[i] - y0) * nx + sx[j]) + c];
    }
    free(win);
    return rc;
}

static int by_value(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Percentile q of the sorted v[0..n) with numpy's linear interpolation. */
static double percentile(const float *v, int64_t n, double q)
{
    double pos = q / 100.0 * (double)(n - 1);
    int64_t i = (int64_t)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (v[i + 1] - (double)v[i]) * (pos - (double)i);
}

/* Channel c of x2 (n pixels) scaled from its 1st-99th percentile to 0..255 (Cellpose's
 * normalize99, clipped, truncated) into component comp of rgb; a flat channel stays 0. */
static int paint_channel(const float *x2, int c, int64_t n, uint8_t *rgb, const int *comps,
                         int ncomp)
{
    float *v = malloc(sizeof *v * (size_t)n);
    if (!v) return -1;
    for (int64_t i = 0; i < n; i++) v[i] = x2[2 * i + c];
    qsort(v, (size_t)n, sizeof *v, by_value);
    double lo = percentile(v, n, 1.0), hi = percentile(v, n, 99.0);
    if (!(hi > lo)) lo = v[0], hi = v[n - 1];
    free(v);
    if (!(hi > lo)) return 0;
    for (int64_t i = 0; i < n; i++) {
        double s = (x2[2 * i + c] - lo) / (hi - lo);
        s = s < 0 ? 0 : s > 1 ? 1 : s;
        uint8_t u = (uint8_t)(s * 255.0);
        for (int k = 0; k < ncomp; k++) rgb[3 * i + comps[k]] = u;
    }
    return 0;
}

int cp_overlay_save(const char *h5_path, const char *image, const cp_params *p,
                    const char *png_path, char *err)
{
    cp_labels_in li;
    int64_t oy, ox;
    int rc = cp_labels_open(h5_path, "to draw the overlay", &li, err);
    if (rc) return rc;
    const int64_t nz = li.nz, ny = li.ny, nx = li.nx;
    cp_overlay_size(ny, nx, &oy, &ox);
    int64_t z = nz / 2, n = oy * ox;
    int64_t *sy = malloc(sizeof *sy * (size_t)oy), *sx = malloc(sizeof *sx * (size_t)ox);
    uint32_t *lab = malloc(sizeof *lab * (size_t)n);
    uint8_t *rgb = calloc((size_t)(3 * n), 1);
    float *x2 = image ? malloc(sizeof *x2 * (size_t)(2 * n)) : NULL;
    if (!sy || !sx || !lab || !rgb || (image && !x2))
        rc = cp_errf(err, CP_ENOMEM, "%s: out of memory for the overlay", png_path);
    for (int64_t i = 0; !rc && i < oy; i++) sy[i] = cp_overlay_source(i, oy, ny);
    for (int64_t j = 0; !rc && j < ox; j++) sx[j] = cp_overlay_source(j, ox, nx);
    if (!rc && cp_labels_read(&li, z, sy, oy, sx, ox, lab))
        rc = cp_errf(err, CP_EIO, "%s: cannot read /labels to draw the overlay", h5_path);
    cp_labels_close(&li);
    if (!rc && image) {
        cp_image im;
        rc = cp_image_open(&im, image, (int)p->z_axis, (int)p->channel_axis,
                           p->stitch_threshold > 0, (int)p->chan, (int)p->chan2, err);
        if (!rc && (im.layout.nz != nz || im.layout.ny != ny || im.layout.nx != nx))
            rc = cp_errf(err, CP_EFORMAT, "%s: %lldx%lldx%lld does not match /labels of %s",
                         image, (long long)im.layout.nz, (long long)im.layout.ny,
                         (long long)im.layout.nx, h5_path);
        if (!rc) rc = read_image(&im, z, sy, oy, sx, ox, x2, err);
        cp_image_close(&im); /* safe after a failed open */
    }
    if (!rc && image) {
        int grey[3] = {0, 1, 2}, c0[1] = {(int)((p->chan + 2) % 3)},
            c1[1] = {(int)((p->chan2 + 2) % 3)};
        int bad = p->chan <= 0 ? paint_channel(x2, 0, n, rgb, grey, 3)
                               : paint_channel(x2, 0, n, rgb, c0, 1);
        if (!bad && p->chan > 0 && p->chan2 > 0) bad = paint_channel(x2, 1, n, rgb, c1, 1);
        if (bad) rc = cp_errf(err, CP_ENOMEM, "%s: out of memory for the overlay", png_path);
    }
    if (!rc) {
        cp_overlay_outline(lab, oy, ox, rgb);
        rc = cp_overlay_png_write(png_path, rgb, oy, ox, err);
    }
    free(sy);
    free(sx);
    free(lab);
    free(rgb);
    free(x2);
    return rc;
}
