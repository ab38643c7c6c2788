/* Tests of src/tiff_io.c. Modes (argv[1]):
 *   variants        every layout we claim (dtype x samples x planar x strips/tiles x compression x
 *                   predictor x classic/BigTIFF), written here with libtiff, full and windowed
 * reads exact; ImageJ and tifffile shape metadata; write           round trips of the writers, and
 * a failed write leaving nothing behind; bad             one check per bad input, with the message
 * expected; data            the TIFFs of shared/data against the oracle reader, with their shapes;
 *   reference CASE  every TIFF of a reference case against the oracle reader, shapes from
 * case.json. */
#include "testutil.h"
#include "tiff_io.h"
#include "cp_err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

/* A file to generate: sample type, layout, pages, and optional ImageDescription. */
typedef struct gen {
    int bits, fmt, spp, planar, tiled, comp, pred, big, pages;
    int64_t ny, nx;
    const char *desc;
    int64_t rps; /* rows per strip; 0: 5 */
} gen;

static int64_t gen_n(const gen *g)
{
    return g->pages * g->ny * g->nx * g->spp;
}

/* Known sample values, as the bit pattern of the stored sample (float32: its bits). */
static uint32_t gen_value(const gen *g, int64_t p, int64_t y, int64_t x, int s)
{
    uint32_t h = (uint32_t)(p * 2654435761u) ^ (uint32_t)(y * 40503u + x * 2246822519u + s * 97u);
    if (g->bits == 8) return (uint32_t)(p * 7 + y * 3 + x * 5 + s * 11) & 0xFF;
    if (g->bits == 16) return (uint32_t)(p * 1009 + y * 257 + x * 31 + s * 4099) & 0xFFFF;
    if (g->fmt == SAMPLEFORMAT_UINT) return h;
    float f = (float)(y * 0.5 - x * 0.25 + s * 1000 + p * 1e5) * ((h & 1) ? 1.0f : -3.0e-7f);
    if (y == 1 && x == 2) f = s == 0 ? NAN : s == 1 ? INFINITY : -0.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float as_float(const gen *g, uint32_t u)
{
    float f;
    if (g->fmt != SAMPLEFORMAT_IEEEFP) return (float)u;
    memcpy(&f, &u, 4);
    return f;
}

/* Writes g with libtiff (strips of 5 rows or 16x16 tiles); vals (pages, ny, nx, spp) or zeros. */
static void gen_write(const char *path, const gen *g, const uint32_t *vals)
{
    TIFF *tif = TIFFOpen(path, g->big ? "w8" : "w");
    if (!tif) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    int bytes = g->bits >= 8 ? g->bits / 8 : 1;
    for (int64_t p = 0; p < g->pages; p++) {
        TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)g->nx);
        TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)g->ny);
        TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, g->spp);
        TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, g->bits);
        TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, g->fmt);
        TIFFSetField(tif, TIFFTAG_PHOTOMETRIC,
                     g->spp == 3 && g->bits == 8 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
        if (g->spp == 2 || g->spp == 4 || (g->spp == 3 && g->bits != 8)) {
            uint16_t extra[4] = {0};
            TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, g->spp - 1, extra);
        }
        TIFFSetField(tif, TIFFTAG_PLANARCONFIG,
                     g->planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
        TIFFSetField(tif, TIFFTAG_COMPRESSION, g->comp);
        if (g->pred)
            TIFFSetField(tif, TIFFTAG_PREDICTOR,
                         g->fmt == SAMPLEFORMAT_IEEEFP ? PREDICTOR_FLOATINGPOINT
                                                       : PREDICTOR_HORIZONTAL);
        if (g->desc && p == 0) TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, g->desc);
        int64_t bw = g->nx, bh = g->rps ? g->rps : 5;
        if (g->tiled) {
            bw = bh = 16;
            TIFFSetField(tif, TIFFTAG_TILEWIDTH, 16);
            TIFFSetField(tif, TIFFTAG_TILELENGTH, 16);
        } else {
            TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)bh);
        }
        int planes = g->planar ? g->spp : 1, sppb = g->planar ? 1 : g->spp;
        size_t cap = (size_t)(bw * bh * sppb * bytes) + 64;
        unsigned char *buf = calloc(1, cap);
        for (int s = 0; s < planes; s++)
            for (int64_t by = 0; by < g->ny; by += bh)
                for (int64_t bx = 0; bx < g->nx; bx += bw) {
                    memset(buf, 0, cap);
                    int64_t rows = g->tiled ? bh : (by + bh < g->ny ? bh : g->ny - by);
                    for (int64_t r = 0; r < rows && vals && by + r < g->ny; r++)
                        for (int64_t c = 0; c < bw && bx + c < g->nx; c++)
                            for (int k = 0; k < sppb; k++) {
                                uint32_t v =
                                    vals[((p * g->ny + by + r) * g->nx + bx + c) * g->spp + s + k];
                                unsigned char *d = buf + ((r * bw + c) * sppb + k) * bytes;
                                if (bytes == 1)
                                    *d = (unsigned char)v;
                                else if (bytes == 2) {
                                    uint16_t w = (uint16_t)v;
                                    memcpy(d, &w, 2);
                                } else
                                    memcpy(d, &v, 4);
                            }
                    tmsize_t size = g->bits >= 8 ? (tmsize_t)(rows * bw * sppb * bytes)
                                                 : (g->tiled ? TIFFTileSize(tif)
                                                             : TIFFVStripSize(tif, (uint32_t)rows));
                    tmsize_t rc =
                        g->tiled
                            ? TIFFWriteEncodedTile(
                                  tif,
                                  TIFFComputeTile(tif, (uint32_t)bx, (uint32_t)by, 0, (uint16_t)s),
                                  buf, size)
                            : TIFFWriteEncodedStrip(
                                  tif, TIFFComputeStrip(tif, (uint32_t)by, (uint16_t)s), buf, size);
                    if (rc < 0) {
                        fprintf(stderr, "cannot write %s\n", path);
                        exit(2);
                    }
                }
        free(buf);
        TIFFWriteDirectory(tif);
    }
    TIFFClose(tif);
}

/* Expected values of g as stored bit patterns. */
static uint32_t *gen_values(const gen *g)
{
    uint32_t *v = malloc(sizeof *v * (size_t)gen_n(g));
    for (int64_t p = 0, i = 0; p < g->pages; p++)
        for (int64_t y = 0; y < g->ny; y++)
            for (int64_t x = 0; x < g->nx; x++)
                for (int s = 0; s < g->spp; s++) v[i++] = gen_value(g, p, y, x, s);
    return v;
}

/* Reads window (page, y0, x0, ny, nx) as f32 and (for integers) u32; counts mismatches. */
static int64_t check_window(cp_tiff *t, const gen *g, const uint32_t *vals, int64_t p, int64_t y0,
                            int64_t x0, int64_t ny, int64_t nx)
{
    char err[CP_ERR_LEN] = "";
    int64_t n = ny * nx * g->spp, bad = 0;
    float *f = malloc(sizeof *f * (size_t)n + 1);
    uint32_t *u = malloc(sizeof *u * (size_t)n + 1);
    int rc = cp_tiff_read_f32(t, p, y0, x0, ny, nx, f, err);
    int rcu = g->fmt == SAMPLEFORMAT_UINT ? cp_tiff_read_u32(t, p, y0, x0, ny, nx, u, err) : 0;
    if (rc || rcu) {
        fprintf(stderr, "read failed: %s\n", err);
        bad = n ? n : 1;
    }
    for (int64_t y = 0; y < ny && !bad; y++)
        for (int64_t x = 0; x < nx; x++)
            for (int s = 0; s < g->spp; s++) {
                int64_t i = (y * nx + x) * g->spp + s;
                uint32_t want = vals[((p * g->ny + y0 + y) * g->nx + x0 + x) * g->spp + s];
                float wf = as_float(g, want);
                int okf = g->fmt == SAMPLEFORMAT_IEEEFP ? memcmp(&f[i], &wf, 4) == 0 : f[i] == wf;
                int oku = g->fmt != SAMPLEFORMAT_UINT || u[i] == want;
                bad += !okf || !oku;
            }
    free(f);
    free(u);
    return bad;
}

static const char *gen_name(const gen *g)
{
    return tu_path("%s%d_spp%d_%s_%s_comp%d_pred%d_%s", g->fmt == SAMPLEFORMAT_IEEEFP ? "f" : "u",
                   g->bits, g->spp, g->planar ? "planar" : "contig", g->tiled ? "tiles" : "strips",
                   g->comp, g->pred, g->big ? "big" : "classic");
}

/* One generated variant: shape, full read of every page, and windows crossing block borders. */
static void check_variant(const gen *g)
{
    const char *name = gen_name(g);
    const char *path = tu_path("%s/%s.tif", tu_tmpdir(), name);
    uint32_t *vals = gen_values(g);
    gen_write(path, g, vals);
    cp_tiff *t;
    cp_tiff_info in;
    char err[CP_ERR_LEN] = "";
    int rc = cp_tiff_open(path, &t, &in, err);
    TU_CHECK(rc == 0, "%s: open: %s", name, err);
    if (rc) {
        free(vals);
        return;
    }
    cp_dtype want_dt = g->fmt == SAMPLEFORMAT_IEEEFP ? CP_F32
                       : g->bits == 8                ? CP_U8
                       : g->bits == 16               ? CP_U16
                                                     : CP_U32;
    int nd = (g->pages > 1) + 2 + (g->spp > 1);
    TU_CHECK(in.npages == g->pages && in.ny == g->ny && in.nx == g->nx && in.spp == g->spp &&
                 in.dtype == want_dt && in.ndim == nd && in.shape[nd - 2 - (g->spp > 1)] == g->ny,
             "%s: info npages %lld ny %lld nx %lld spp %d dtype %d ndim %d", name,
             (long long)in.npages, (long long)in.ny, (long long)in.nx, in.spp, in.dtype, in.ndim);
    int64_t bad = 0;
    /* pages in reverse (directory switching), then windows on the last page */
    for (int64_t p = g->pages - 1; p >= 0; p--)
        bad += check_window(t, g, vals, p, 0, 0, g->ny, g->nx);
    int64_t P = g->pages - 1, Y = g->ny, X = g->nx;
    if (Y >= 21 && X >= 40) {                                   /* small images: full reads only */
        bad += check_window(t, g, vals, P, 3, 10, 18, 30);      /* crosses strips and tiles */
        bad += check_window(t, g, vals, 0, Y - 1, X - 1, 1, 1); /* last pixel: edge tile/strip */
        bad += check_window(t, g, vals, P, 0, 0, 1, 1);         /* first pixel */
        bad += check_window(t, g, vals, 0, 16, 15, 2, 2);       /* 4 tiles */
        bad += check_window(t, g, vals, P, 4, 0, 2, X);         /* two strips, full rows */
        bad += check_window(t, g, vals, 0, 0, 17, Y, 1);        /* one column */
        bad += check_window(t, g, vals, P, 5, 16, 0, 0);        /* empty */
    }
    TU_CHECK(bad == 0, "%s: %lld wrong samples", name, (long long)bad);
    cp_tiff_close(t);
    free(vals);
    unlink(path);
}

static void test_variants(void)
{
    static const int types[4][2] = {{8, SAMPLEFORMAT_UINT},
                                    {16, SAMPLEFORMAT_UINT},
                                    {32, SAMPLEFORMAT_UINT},
                                    {32, SAMPLEFORMAT_IEEEFP}};
    static const int comps[3] = {COMPRESSION_NONE, COMPRESSION_LZW, COMPRESSION_ADOBE_DEFLATE};
    int nfiles = 0;
    for (int ty = 0; ty < 4; ty++)
        for (int spp = 1; spp <= 3; spp += 2)
            for (int planar = 0; planar < 2; planar++)
                for (int tiled = 0; tiled < 2; tiled++)
                    for (int c = 0; c < 3; c++)
                        for (int big = 0; big < 2; big++) {
                            gen g = {types[ty][0], types[ty][1], spp, planar, tiled,
                                     comps[c],     c > 0 && big, big, 2,      37,
                                     53,           NULL,         0};
                            check_variant(&g);
                            nfiles++;
                        }
    /* 2 and 4 samples, one page, a single strip, 1x1 image */
    gen more[] = {
        {16, SAMPLEFORMAT_UINT, 2, 0, 0, COMPRESSION_NONE, 0, 0, 1, 37, 53, NULL, 0},
        {8, SAMPLEFORMAT_UINT, 4, 1, 1, COMPRESSION_LZW, 1, 0, 1, 37, 53, NULL, 0},
        {32, SAMPLEFORMAT_IEEEFP, 4, 0, 1, COMPRESSION_ADOBE_DEFLATE, 0, 1, 3, 37, 53, NULL, 0},
        {16, SAMPLEFORMAT_UINT, 1, 0, 0, COMPRESSION_ADOBE_DEFLATE, 0, 0, 1, 4, 53, NULL, 0}};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++, nfiles++) check_variant(&more[i]);
    printf("variants: %d generated files read exactly\n", nfiles);
}

/* Shape from ImageJ / tifffile metadata on generated 8x6 uint16 pages. */
static void check_shape(const char *what, int pages, int spp, const char *desc, int ndim,
                        const int64_t *shape, int64_t npages)
{
    gen g = {16, SAMPLEFORMAT_UINT, spp, 0, 0, COMPRESSION_NONE, 0, 0, pages, 8, 6, desc, 0};
    const char *path = tu_path("%s/shape.tif", tu_tmpdir());
    gen_write(path, &g, NULL);
    cp_tiff *t;
    cp_tiff_info in;
    char err[CP_ERR_LEN] = "";
    int rc = cp_tiff_open(path, &t, &in, err);
    TU_CHECK(rc == 0, "%s: %s", what, err);
    if (rc) return;
    int same = in.ndim == ndim && in.npages == npages;
    for (int i = 0; same && i < ndim; i++) same = in.shape[i] == shape[i];
    char got[200] = "";
    for (int i = 0; i < in.ndim; i++)
        snprintf(got + strlen(got), 40, "%lld,", (long long)in.shape[i]);
    TU_CHECK(same, "%s: shape (%s) npages %lld", what, got, (long long)in.npages);
    printf("shape %-32s -> (%s) series pages %lld\n", what, got, (long long)in.npages);
    cp_tiff_close(t);
}

static void test_shapes(void)
{
    check_shape("ImageJ channels=3", 3, 1, "ImageJ=1.54g\nimages=3\nchannels=3\nmode=composite\n",
                3, (int64_t[]){3, 8, 6}, 3);
    check_shape("ImageJ channels=2 slices=5", 10, 1,
                "ImageJ=1.54g\nimages=10\nchannels=2\nslices=5\nhyperstack=true\n", 4,
                (int64_t[]){5, 2, 8, 6}, 10);
    check_shape("ImageJ frames=2 slices=3", 6, 1, "ImageJ=1.54g\nimages=6\nslices=3\nframes=2\n", 4,
                (int64_t[]){2, 3, 8, 6}, 6);
    check_shape("ImageJ RGB channels=3", 1, 3, "ImageJ=1.54g\nimages=1\nchannels=3\n", 3,
                (int64_t[]){8, 6, 3}, 1);
    check_shape("ImageJ no counts, 4 pages", 4, 1, "ImageJ=1.54g\nunit=micron\n", 3,
                (int64_t[]){4, 8, 6}, 4);
    check_shape("tifffile [2,3,8,6]", 6, 1, "{\"shape\": [2, 3, 8, 6]}", 4, (int64_t[]){2, 3, 8, 6},
                6);
    check_shape("tifffile [1,8,6] (not squeezed)", 1, 1, "{\"shape\": [1, 8, 6]}", 3,
                (int64_t[]){1, 8, 6}, 1);
    check_shape("tifffile [8,6,3]", 1, 3, "{\"shape\": [8, 6, 3], \"axes\": \"YXS\"}", 3,
                (int64_t[]){8, 6, 3}, 1);
    check_shape("tifffile [2,8,6] of 3 pages", 3, 1, "{\"shape\": [2, 8, 6]}", 3,
                (int64_t[]){2, 8, 6}, 2);
    check_shape("tifffile [6,8] (inconsistent)", 1, 1, "{\"shape\": [6, 8]}", 2, (int64_t[]){8, 6},
                1);
    check_shape("no metadata, 5 pages", 5, 1, "some text", 3, (int64_t[]){5, 8, 6}, 5);
    check_shape("no metadata, 1 page RGBA", 1, 4, NULL, 3, (int64_t[]){8, 6, 4}, 1);
}

/* ---- writers ---------------------------------------------------------------------------- */

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_write(void)
{
    char err[CP_ERR_LEN] = "";
    int64_t nz = 3, ny = 70, nx = 1100, n = nz * ny * nx; /* 59 rows per strip: 2 strips a page */
    uint32_t *u = malloc(sizeof *u * (size_t)n), *ub = malloc(sizeof *u * (size_t)n);
    float *f = malloc(sizeof *f * (size_t)n), *fb = malloc(sizeof *f * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        u[i] = (uint32_t)(i * 2654435761u) | (i % 3 ? 0x10000u : 0); /* many values > 65535 */
        f[i] = (float)(i % 1000) * -1.25e-3f + (float)(i / 1000);
    }
    const char *pu = tu_path("%s/labels.tif", tu_tmpdir()),
               *pf = tu_path("%s/flows.tif", tu_tmpdir());
    TU_CHECK(cp_tiff_write_u32(pu, u, nz, ny, nx, err) == 0, "write u32: %s", err);
    TU_CHECK(cp_tiff_write_f32(pf, f, nz, ny, nx, err) == 0, "write f32: %s", err);
    TU_CHECK(!exists(tu_path("%s.partial", pu)) && !exists(tu_path("%s.partial", pf)),
             "partial left");
    cp_tiff *t;
    cp_tiff_info in;
    int rc = cp_tiff_open(pu, &t, &in, err);
    TU_CHECK(rc == 0 && in.dtype == CP_U32 && in.npages == nz && in.ndim == 3 && in.shape[0] == nz,
             "reopen u32: %s", err);
    for (int64_t z = 0; !rc && z < nz; z++)
        rc = cp_tiff_read_u32(t, z, 0, 0, ny, nx, ub + z * ny * nx, err);
    TU_CHECK(rc == 0 && tu_count_diff_u32(u, ub, n) == 0, "u32 round trip: %s", err);
    cp_tiff_close(t);
    tu_tiff o = tu_read_tiff(pu);
    TU_CHECK(o.n == n && o.u32 && tu_count_diff_u32(u, o.u32, n) == 0, "u32 by the oracle reader");
    tu_tiff_free(&o);
    rc = cp_tiff_open(pf, &t, &in, err);
    TU_CHECK(rc == 0 && in.dtype == CP_F32 && in.npages == nz, "reopen f32: %s", err);
    for (int64_t z = 0; !rc && z < nz; z++)
        rc = cp_tiff_read_f32(t, z, 0, 0, ny, nx, fb + z * ny * nx, err);
    TU_CHECK(rc == 0 && memcmp(f, fb, sizeof *f * (size_t)n) == 0, "f32 round trip: %s", err);
    cp_tiff_close(t);
    /* overwriting an existing file, one page */
    TU_CHECK(cp_tiff_write_f32(pf, f, 1, 1, 1, err) == 0, "overwrite: %s", err);
    rc = cp_tiff_open(pf, &t, &in, err);
    TU_CHECK(rc == 0 && in.npages == 1 && in.ny == 1 && in.nx == 1 && in.ndim == 2,
             "overwritten: %s", err);
    if (!rc) cp_tiff_close(t);

    /* failures leave neither the file nor the partial */
    const char *nodir = tu_path("%s/no_such_dir/labels.tif", tu_tmpdir());
    rc = cp_tiff_write_u32(nodir, u, nz, ny, nx, err);
    printf("write into a missing folder: %s\n", err);
    TU_CHECK(rc == CP_EIO && strstr(err, nodir) && strstr(err, "No such file or directory"), "%s",
             err);
    TU_CHECK(!exists(nodir) && !exists(tu_path("%s.partial", nodir)),
             "leftover after failed write");
    const char *isdir = tu_path("%s/adir", tu_tmpdir());
    mkdir(isdir, 0777);
    mkdir(tu_path("%s.partial", isdir), 0777); /* the partial cannot be created */
    rc = cp_tiff_write_u32(isdir, u, nz, ny, nx, err);
    printf("write where the partial is a folder: %s\n", err);
    TU_CHECK(rc == CP_EIO && strstr(err, isdir), "%s", err);
    rmdir(tu_path("%s.partial", isdir));
    rc = cp_tiff_write_u32(isdir, u, 1, 4, 4, err); /* rename onto a folder fails */
    printf("write onto a folder: %s\n", err);
    TU_CHECK(rc == CP_EIO && strstr(err, "cannot rename") && !exists(tu_path("%s.partial", isdir)),
             "%s", err);
    if (exists("/dev/full")) {
        /* the partial is a symlink to /dev/full: the data cannot be written (ENOSPC) */
        const char *full = tu_path("%s/full.tif", tu_tmpdir());
        TU_CHECK(symlink("/dev/full", tu_path("%s.partial", full)) == 0, "symlink");
        rc = cp_tiff_write_u32(full, u, nz, ny, nx, err);
        printf("write onto a full device: %s\n", err);
        TU_CHECK(rc == CP_EIO && strstr(err, full) && !exists(full) &&
                     !exists(tu_path("%s.partial", full)),
                 "%s", err);
    }
    rc = cp_tiff_write_f32(pf, f, 0, ny, nx, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, pf), "zero pages: %s", err);
    free(u), free(ub), free(f), free(fb);
}

/* ---- bad inputs ------------------------------------------------------------------------- */

/* Opens path (and reads all of page 0 when open succeeds); expects code and both fragments in
 * the message, which names the file. */
static void expect_bad(const char *what, const char *path, int code, const char *frag1,
                       const char *frag2)
{
    cp_tiff *t = NULL;
    cp_tiff_info in;
    char err[CP_ERR_LEN] = "";
    int rc = cp_tiff_open(path, &t, &in, err);
    if (rc == 0) {
        float *f = malloc(sizeof *f * (size_t)(in.ny * in.nx * in.spp));
        rc = cp_tiff_read_f32(t, 0, 0, 0, in.ny, in.nx, f, err);
        free(f);
        cp_tiff_close(t);
    }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("%-26s rc %d: %s\n", what, rc, err);
    TU_CHECK(rc == code && (code == 0 || strstr(err, path)) && strstr(err, frag1) &&
                 (!frag2 || strstr(err, frag2)) && !strchr(err, '\n'),
             "%s (%s): expected %d with \"%s\" \"%s\", got %d: %s", what, base, code, frag1,
             frag2 ? frag2 : "", rc, err);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

/* Classic little-endian TIFF: sets the value of the first IFD's entry `tag` (as a LONG). */
static void patch_tag(unsigned char *b, uint16_t tag, uint32_t value)
{
    uint32_t ifd;
    uint16_t count;
    memcpy(&ifd, b + 4, 4);
    memcpy(&count, b + ifd, 2);
    for (int i = 0; i < count; i++) {
        unsigned char *e = b + ifd + 2 + 12 * i;
        uint16_t etag, type = 4;
        memcpy(&etag, e, 2);
        if (etag != tag) continue;
        memcpy(e + 2, &type, 2);
        memcpy(e + 8, &value, 4);
    }
}

/* Rewrites a libtiff-made single-page, single-strip classic file so that the IFD comes right
 * after the header and the pixel data after it (the layout tifffile writes); returns the offset
 * where the pixel data starts. */
static size_t ifd_first(const char *path)
{
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    uint32_t ifd, off = 0, dataoff = 0, datalen = 0;
    uint16_t count;
    memcpy(&ifd, b + 4, 4);
    memcpy(&count, b + ifd, 2);
    size_t ifdlen = 2 + 12 * (size_t)count + 4;
    /* new layout: header (8) | IFD | pixel data; out-of-line tag values are not used here */
    for (int i = 0; i < count; i++) {
        unsigned char *e = b + ifd + 2 + 12 * i;
        uint16_t tag;
        memcpy(&tag, e, 2);
        if (tag == TIFFTAG_STRIPOFFSETS) memcpy(&dataoff, e + 8, 4), off = (uint32_t)(e + 8 - b);
        if (tag == TIFFTAG_STRIPBYTECOUNTS) memcpy(&datalen, e + 8, 4);
    }
    unsigned char *o = calloc(1, 8 + ifdlen + datalen);
    memcpy(o, b, 8);
    uint32_t newifd = 8, newdata = (uint32_t)(8 + ifdlen);
    memcpy(o + 4, &newifd, 4);
    memcpy(o + 8, b + ifd, ifdlen);
    memcpy(o + 8 + (off - ifd), &newdata, 4);
    memset(o + 8 + ifdlen - 4, 0, 4);
    memcpy(o + newdata, b + dataoff, datalen);
    write_bytes(path, o, 8 + ifdlen + datalen);
    free(b);
    free(o);
    return newdata;
}

static void truncate_to(const char *src, const char *dst, size_t keep)
{
    size_t n;
    unsigned char *b = read_bytes(src, &n);
    write_bytes(dst, b, keep < n ? keep : n);
    free(b);
}

static void test_bad(void)
{
    const char *d = tu_tmpdir();
    const char *p;
    expect_bad("missing file", tu_path("%s/missing.tif", d), CP_EIO, "cannot open", "No such file");
    p = tu_path("%s/empty.tif", d);
    write_bytes(p, "", 0);
    expect_bad("empty file", p, CP_EFORMAT, "empty file", NULL);
    p = tu_path("%s/random.tif", d);
    unsigned char rnd[4096];
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)((i * 2654435761u) >> 13);
    write_bytes(p, rnd, sizeof rnd);
    expect_bad("random bytes", p, CP_EFORMAT, "not a readable TIFF", "Not a TIFF");
    expect_bad("a folder", d, CP_EFORMAT, "a directory, not a TIFF", NULL);

    /* truncations: one uncompressed strip of 64x64 uint16 with the IFD first */
    gen g = {16, SAMPLEFORMAT_UINT, 1, 0, 0, COMPRESSION_NONE, 0, 0, 1, 64, 64, NULL, 64};
    const char *good = tu_path("%s/good.tif", d);
    uint32_t *vals = gen_values(&g);
    gen_write(good, &g, vals);
    size_t data = ifd_first(good);
    expect_bad("(sanity: untruncated)", good, CP_OK, "", NULL);
    p = tu_path("%s/cut_pixels.tif", d);
    truncate_to(good, p, data + 64 * 64); /* half of the 8192 bytes of pixels */
    expect_bad("truncated in pixel data", p, CP_EFORMAT, "page 0: damaged or truncated file",
               "Bogus \"StripByteCounts\"");
    p = tu_path("%s/cut_header.tif", d);
    truncate_to(good, p, 6);
    expect_bad("truncated in header", p, CP_EFORMAT, "not a readable TIFF", "header");
    p = tu_path("%s/cut_ifd.tif", d);
    truncate_to(good, p, 8 + 30);
    expect_bad("truncated in IFD", p, CP_EFORMAT, "not a readable TIFF", NULL);
    /* a deflate strip with garbage in the middle of its stream */
    g.comp = COMPRESSION_ADOBE_DEFLATE;
    p = tu_path("%s/bad_deflate.tif", d);
    gen_write(p, &g, vals);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    for (size_t i = 40; i < 200 && i < n; i++) b[i] ^= 0x5A;
    write_bytes(p, b, n);
    free(b);
    expect_bad("corrupt deflate stream", p, CP_EFORMAT, "truncated or corrupt data", "libtiff:");
    free(vals);

    /* libtiff warnings: a strip table too short for the image (ImageLength 64 -> 32832 = 513
     * strips of 64 rows, one StripOffsets entry) is padded by libtiff with a warning, and the
     * rows it cannot find would be read as garbage: an error naming the tag. An unknown private
     * tag only draws a warning we ignore: the file reads. */
    gen st = {16, SAMPLEFORMAT_UINT, 1, 0, 0, COMPRESSION_NONE, 0, 0, 1, 64, 64, NULL, 64};
    uint32_t *stv = gen_values(&st);
    p = tu_path("%s/strips.tif", d);
    gen_write(p, &st, stv);
    free(stv);
    b = read_bytes(p, &n);
    patch_tag(b, TIFFTAG_IMAGELENGTH, 32832);
    write_bytes(p, b, n);
    free(b);
    expect_bad("strip table too short", p, CP_EFORMAT, "page 0: ",
               "Incorrect count for \"StripOffsets\"");
    p = tu_path("%s/private_tag.tif", d);
    TIFF *pt = TIFFOpen(p, "w");
    static const TIFFFieldInfo private_tag[] = {
        {65000, -1, -1, TIFF_ASCII, FIELD_CUSTOM, 1, 0, "CellposeTestPrivate"}};
    TIFFMergeFieldInfo(pt, private_tag, 1);
    TIFFSetField(pt, TIFFTAG_IMAGEWIDTH, 8);
    TIFFSetField(pt, TIFFTAG_IMAGELENGTH, 8);
    TIFFSetField(pt, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(pt, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(pt, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(pt, 65000, "private metadata");
    for (uint32_t r = 0; r < 8; r++) {
        unsigned char row[8] = {0};
        TIFFWriteScanline(pt, row, r, 0);
    }
    TIFFClose(pt);
    expect_bad("unknown private tag", p, CP_OK, "", NULL);

    /* sample types and counts we refuse */
    struct {
        const char *what;
        int bits, fmt, spp;
        const char *frag;
    } types[] = {
        {"signed int16", 16, SAMPLEFORMAT_INT, 1,
         "unsupported SampleFormat 2 (signed integer) with BitsPerSample 16"},
        {"float64", 64, SAMPLEFORMAT_IEEEFP, 1,
         "unsupported SampleFormat 3 (float) with BitsPerSample 64"},
        {"1-bit", 1, SAMPLEFORMAT_UINT, 1,
         "unsupported SampleFormat 1 (unsigned integer) with BitsPerSample 1"},
        {"12-bit", 12, SAMPLEFORMAT_UINT, 1, "with BitsPerSample 12"},
        {"complex float", 64, SAMPLEFORMAT_COMPLEXIEEEFP, 1,
         "unsupported SampleFormat 6 (complex float)"},
        {"5 samples per pixel", 8, SAMPLEFORMAT_UINT, 5, "unsupported SamplesPerPixel 5"},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        gen t = {types[i].bits,
                 types[i].fmt,
                 types[i].spp,
                 0,
                 0,
                 COMPRESSION_NONE,
                 0,
                 0,
                 1,
                 8,
                 8,
                 NULL,
                 0};
        p = tu_path("%s/type%zu.tif", d, i);
        gen_write(p, &t, NULL);
        expect_bad(types[i].what, p, CP_EUNSUPPORTED, types[i].frag, "page 0");
    }

    /* sizes patched into a valid file: libtiff itself refuses zero width/height (its message is
     * passed on); absurd sizes are ours to refuse */
    gen s = {8, SAMPLEFORMAT_UINT, 1, 0, 0, COMPRESSION_NONE, 0, 0, 1, 8, 8, NULL, 0};
    const char *small = tu_path("%s/small.tif", d);
    gen_write(small, &s, NULL);
    struct {
        const char *what;
        uint32_t w, h;
        int code;
        const char *f1, *f2;
    } sizes[] = {
        {"zero width", 0, 8, CP_EFORMAT, "not a readable TIFF", "scanline size is zero"},
        {"zero height", 8, 0, CP_EFORMAT, "not a readable TIFF", "zero number of strips"},
        {"absurd size", 4000000, 4000000, CP_EFORMAT, "page 0: absurd size 4000000 x 4000000",
         "2^40"},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *sb = read_bytes(small, &n);
        patch_tag(sb, TIFFTAG_IMAGEWIDTH, sizes[i].w);
        patch_tag(sb, TIFFTAG_IMAGELENGTH, sizes[i].h);
        p = tu_path("%s/size%zu.tif", d, i);
        write_bytes(p, sb, n);
        free(sb);
        expect_bad(sizes[i].what, p, sizes[i].code, sizes[i].f1, sizes[i].f2);
    }

    /* pages that differ */
    gen m = {16, SAMPLEFORMAT_UINT, 1, 0, 0, COMPRESSION_NONE, 0, 0, 1, 8, 8, NULL, 0};
    p = tu_path("%s/mismatch.tif", d);
    TIFF *w = TIFFOpen(p, "w");
    for (int page = 0; page < 3; page++) {
        uint16_t row[9] = {0};
        TIFFSetField(w, TIFFTAG_IMAGEWIDTH, page == 2 ? 9 : 8);
        TIFFSetField(w, TIFFTAG_IMAGELENGTH, 8);
        TIFFSetField(w, TIFFTAG_BITSPERSAMPLE, m.bits);
        TIFFSetField(w, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(w, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        for (uint32_t r = 0; r < 8; r++) TIFFWriteScanline(w, row, r, 0);
        TIFFWriteDirectory(w);
    }
    TIFFClose(w);
    expect_bad("page sizes differ", p, CP_EFORMAT,
               "page 2 is 8 x 9 x 1 uint16 but page 0 is 8 x 8 x 1 uint16", NULL);
    p = tu_path("%s/mismatch_type.tif", d);
    w = TIFFOpen(p, "w");
    for (int page = 0; page < 2; page++) {
        uint16_t row[8] = {0};
        TIFFSetField(w, TIFFTAG_IMAGEWIDTH, 8);
        TIFFSetField(w, TIFFTAG_IMAGELENGTH, 8);
        TIFFSetField(w, TIFFTAG_BITSPERSAMPLE, page ? 8 : 16);
        TIFFSetField(w, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(w, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        for (uint32_t r = 0; r < 8; r++) TIFFWriteScanline(w, row, r, 0);
        TIFFWriteDirectory(w);
    }
    TIFFClose(w);
    expect_bad("page types differ", p, CP_EFORMAT,
               "page 1 is 8 x 8 x 1 uint8 but page 0 is 8 x 8 x 1 uint16", NULL);

    /* metadata asking for pages the file does not have */
    gen j = {16, SAMPLEFORMAT_UINT,        1, 0, 0, COMPRESSION_NONE, 0, 0, 2, 8,
             8,  "{\"shape\": [3, 8, 8]}", 0};
    p = tu_path("%s/json_more.tif", d);
    gen_write(p, &j, NULL);
    expect_bad("tifffile shape > pages", p, CP_EUNSUPPORTED,
               "tifffile metadata declares 3 pages but the file has 2", NULL);
    j.desc = "ImageJ=1.54g\nimages=4\nchannels=2\nslices=2\n";
    p = tu_path("%s/imagej_more.tif", d);
    gen_write(p, &j, NULL);
    expect_bad("ImageJ images > pages", p, CP_EUNSUPPORTED,
               "ImageJ metadata declares 4 pages but the file has 2", NULL);

    /* misuse of an open file */
    gen fl = {32, SAMPLEFORMAT_IEEEFP, 1, 0, 0, COMPRESSION_NONE, 0, 0, 1, 8, 8, NULL, 0};
    p = tu_path("%s/float.tif", d);
    gen_write(p, &fl, NULL);
    cp_tiff *t;
    cp_tiff_info in;
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_tiff_open(p, &t, &in, err) == 0, "%s", err);
    uint32_t u[64];
    float f[64];
    int rc = cp_tiff_read_u32(t, 0, 0, 0, 8, 8, u, err);
    printf("%-26s rc %d: %s\n", "float read as labels", rc, err);
    TU_CHECK(rc == CP_EUNSUPPORTED && strstr(err, p) && strstr(err, "float32"), "%s", err);
    rc = cp_tiff_read_f32(t, 0, 4, 4, 5, 1, f, err);
    printf("%-26s rc %d: %s\n", "window outside", rc, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, p) && strstr(err, "outside"), "%s", err);
    rc = cp_tiff_read_f32(t, 1, 0, 0, 1, 1, f, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "page 1"), "%s", err);
    cp_tiff_close(t);
}

/* ---- shared TIFFs against the oracle reader ------------------------------------------------ */

static const char *dtype_str(cp_dtype d)
{
    return d == CP_U8 ? "uint8" : d == CP_U16 ? "uint16" : d == CP_U32 ? "uint32" : "float32";
}

/* Reads path whole (page by page) and in a window crossing strips; compares to tu_read_tiff and
 * the expected shape (ndim 0: not checked) and dtype (NULL: not checked). float64 files must be
 * refused. */
static void check_shared(const char *path, int ndim, const int64_t *shape, const char *dtype)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    tu_need(path);
    cp_tiff *t;
    cp_tiff_info in;
    char err[CP_ERR_LEN] = "";
    int rc = cp_tiff_open(path, &t, &in, err);
    if (dtype && strcmp(dtype, "float64") == 0) {
        printf("%-60s float64: %s\n", path + strlen(tu_shared()), err);
        TU_CHECK(rc == CP_EUNSUPPORTED && strstr(err, "BitsPerSample 64"), "%s: %s", base, err);
        if (!rc) cp_tiff_close(t);
        return;
    }
    TU_CHECK(rc == 0, "%s", err);
    if (rc) return;
    int same = ndim == 0 || in.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = in.shape[i] == shape[i];
    char got[200] = "";
    for (int i = 0; i < in.ndim; i++)
        snprintf(got + strlen(got), 40, "%s%lld", i ? "," : "", (long long)in.shape[i]);
    TU_CHECK(same, "%s: shape (%s)", path, got);
    TU_CHECK(!dtype || strcmp(dtype, dtype_str(in.dtype)) == 0, "%s: dtype %s, expected %s", path,
             dtype_str(in.dtype), dtype);
    tu_tiff o = tu_read_tiff(path);
    int64_t page_n = in.ny * in.nx * in.spp, n = in.npages * page_n;
    TU_CHECK(o.pages == in.npages && o.ny == in.ny && o.nx == in.nx && o.spp == in.spp,
             "%s: oracle %lld pages of %lld x %lld x %lld", path, (long long)o.pages,
             (long long)o.ny, (long long)o.nx, (long long)o.spp);
    float *f = malloc(sizeof *f * (size_t)n);
    uint32_t *u = in.dtype == CP_F32 ? NULL : malloc(sizeof *u * (size_t)n);
    for (int64_t p = 0; !rc && p < in.npages; p++) {
        rc = cp_tiff_read_f32(t, p, 0, 0, in.ny, in.nx, f + p * page_n, err);
        if (!rc && u) rc = cp_tiff_read_u32(t, p, 0, 0, in.ny, in.nx, u + p * page_n, err);
    }
    TU_CHECK(rc == 0, "%s", err);
    double worst = rc ? INFINITY : tu_maxabs(f, o.f32, n, NULL);
    int64_t ndiff = u && !rc ? tu_count_diff_u32(u, o.u32, n) : 0;
    /* a window crossing strips, on the last page */
    int64_t wy = in.ny / 3, wx = in.nx / 5, wny = in.ny / 2, wnx = in.nx / 2, last = in.npages - 1;
    float *wf = malloc(sizeof *wf * (size_t)(wny * wnx * in.spp));
    rc = cp_tiff_read_f32(t, last, wy, wx, wny, wnx, wf, err);
    int64_t wbad = rc != 0;
    for (int64_t y = 0; !rc && y < wny; y++)
        for (int64_t i = 0; i < wnx * in.spp; i++) {
            float a = wf[y * wnx * in.spp + i],
                  e = o.f32[last * page_n + ((wy + y) * in.nx + wx) * in.spp + i];
            wbad += memcmp(&a, &e, 4) != 0 && !(isnan(a) && isnan(e));
        }
    printf("%-60s (%s) %s: max |diff| %g, label diffs %lld, window diffs %lld\n",
           path + strlen(tu_shared()), got, dtype_str(in.dtype), worst, (long long)ndiff,
           (long long)wbad);
    TU_CHECK(worst == 0 && ndiff == 0 && wbad == 0, "%s: values differ from the oracle", path);
    free(f), free(u), free(wf);
    tu_tiff_free(&o);
    cp_tiff_close(t);
}

static int shape_of(json_object *j, int64_t *shape)
{
    json_object *s = tu_json_get(j, "shape");
    int n = s ? (int)json_object_array_length(s) : 0;
    for (int i = 0; i < n && i < 6; i++)
        shape[i] = json_object_get_int64(json_object_array_get_idx(s, i));
    return n;
}

/* "shared/x/y.tif" of case.json -> the shared folder's x/y.tif */
static const char *shared_path(const char *p)
{
    return tu_path("%s/%s", tu_shared(), strncmp(p, "shared/", 7) == 0 ? p + 7 : p);
}

static void test_reference(const char *name)
{
    json_object *j = tu_case_json(name);
    int nfiles = 0;
    json_object *input = tu_json_get(j, "input");
    json_object *ip = input ? tu_json_get(input, "path") : NULL;
    char input_path[4096] = ""; /* a copy: tu_path's buffers are reused */
    if (ip) snprintf(input_path, sizeof input_path, "%s", shared_path(json_object_get_string(ip)));
    if (ip) {
        int64_t shape[6];
        int nd = shape_of(input, shape);
        json_object *dt = tu_json_get(input, "dtype");
        check_shared(input_path, nd, shape, dt ? json_object_get_string(dt) : NULL);
        nfiles++;
    }
    json_object_object_foreach(tu_json_get(j, "files"), key, val)
    {
        size_t lk = strlen(key);
        if (lk < 4 || strcmp(key + lk - 4, ".tif") != 0) continue;
        json_object *pp = tu_json_get(val, "path"), *dt = tu_json_get(val, "dtype");
        const char *path = pp ? shared_path(json_object_get_string(pp))
                              : tu_path("%s/reference/%s/%s", tu_shared(), name, key);
        if (strcmp(path, input_path) == 0) continue;
        int64_t shape[6];
        int nd = shape_of(val, shape);
        check_shared(path, nd, shape, dt ? json_object_get_string(dt) : NULL);
        nfiles++;
    }
    printf("%s: %d files\n", name, nfiles);
    TU_CHECK(nfiles > 0, "%s: no TIFF in case.json", name);
    json_object_put(j);
}

static void test_data(void)
{
    struct {
        const char *file;
        int nd;
        int64_t shape[4];
        const char *dtype;
    } d[] = {
        {"data/real/neubias_cell_dna_mts_actin.tif", 3, {3, 350, 350}, "uint16"},
        {"data/real/neubias_rat_hippocampal_neuron.tif", 2, {512, 512}, "uint16"},
        {"data/synthetic/synth_1024.tif", 3, {2, 1024, 1024}, "uint16"},
        {"data/synthetic/synth_1024_labels.tif", 2, {1024, 1024}, "uint32"},
        {"data/synthetic/synth_1024_parts.tif", 2, {1024, 1024}, "uint8"},
        {"data/synthetic/synth_stack_3x256.tif", 3, {3, 256, 256}, "uint16"},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        const char *path = tu_path("%s/%s", tu_shared(), d[i].file);
        if (tu_have(path)) check_shared(path, d[i].nd, d[i].shape, d[i].dtype);
        else printf("%-60s in the extended parity suite only, not checked\n", d[i].file);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "variants") == 0) {
        test_variants();
        test_shapes();
    } else if (strcmp(mode, "write") == 0) {
        test_write();
    } else if (strcmp(mode, "bad") == 0) {
        test_bad();
    } else if (strcmp(mode, "data") == 0) {
        test_data();
    } else if (strcmp(mode, "reference") == 0 && argc > 2) {
        test_reference(argv[2]);
    } else {
        fprintf(stderr, "usage: test_tiff_io variants|write|bad|data|reference CASE\n");
        return 2;
    }
    if (!tu_failed) tu_run("rm -rf '%s'", tu_tmpdir());
    return tu_finish();
}
