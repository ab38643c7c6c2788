/* --save_overlay (src/overlay.c). The PNG is decoded with libpng's reader, and the outline rule
 * and the label colours are recomputed here from overlay.h's contract, not taken from the module:
 *   unit   size and sampling rules, the colours' properties, a 2600 x 3000 synthetic result drawn
 *          at 1775 x 2048 (outlines exactly on the borders of the nearest-sampled labels), an
 *          unwritable destination (error naming the file, nothing left behind)
 *   cli    the real CLI on the 512 crop with the trained model (25 masks): a 512 x 512 PNG named
 *          <image>_cp_overlay.png next to the output, outline pixels exactly where /labels has
 *          borders, every other pixel an image pixel; then masks from its saved flows (outlines
 *          on black, <flows name>_cp_overlay.png) and a --dir run (one picture per image)
 *   stack  a 3-plane stack (stitched): the middle plane, in grey
 *   mpi    2 ranks with --block 128: the same checks, and the same image pixels as one process
 * Every pixel is either an outline pixel of its label's colour or an image pixel; the two are
 * told apart exactly because an outline colour has no zero component and is never grey, while an
 * image pixel is grey (--chan 0) or has a zero component (two channels in R and G). */
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_err.h"
#include "h5store.h"
#include "overlay.h"
#include "params.h"
#include "testutil.h"
#include "tiff_io.h"

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

static char dir[1024], exe[2048];

/* The contract's colour of label l, written out again. */
static void color(uint32_t l, int rgb[3])
{
    int h = (int)(((uint64_t)l * 949u) % 1536u), s = h / 256, f = h % 256;
    int up = 64 + f * 191 / 255, down = 255 - f * 191 / 255;
    int t[6][3] = {{255, up, 64}, {down, 255, 64}, {64, 255, up},
                   {64, down, 255}, {up, 64, 255}, {255, 64, down}};
    memcpy(rgb, t[s], sizeof t[s]);
}

static int is_outline(const uint32_t *lab, int64_t ny, int64_t nx, int64_t y, int64_t x)
{
    uint32_t l = lab[y * nx + x];
    if (!l) return 0;
    static const int d[4][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}};
    for (int k = 0; k < 4; k++) {
        int64_t yy = y + d[k][0], xx = x + d[k][1];
        if (yy >= 0 && yy < ny && xx >= 0 && xx < nx && lab[yy * nx + xx] != l) return 1;
    }
    return 0;
}

/* The PNG as 8-bit RGB (malloc'ed), NULL if libpng cannot read it. */
static uint8_t *read_png(const char *path, int64_t *h, int64_t *w, int *rgb_file)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        fprintf(stderr, "%s: %s\n", path, im.message);
        return NULL;
    }
    *rgb_file = im.format == PNG_FORMAT_RGB;
    im.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
    if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        fprintf(stderr, "%s: %s\n", path, im.message);
        free(buf);
        png_image_free(&im);
        return NULL;
    }
    *h = im.height, *w = im.width;
    return buf;
}

/* Checks png against labels lab (ny, nx) as drawn (already sampled); grey: the image part must be
 * grey, else its blue component 0 (--chan 1 --chan2 2). Returns the decoded pixels (or NULL). */
static uint8_t *check_png(const char *png, const uint32_t *lab, int64_t ny, int64_t nx, int grey,
                          int64_t *outline_px)
{
    int64_t h = 0, w = 0, wrong = 0, bad_image = 0, outlines = 0, first = -1;
    int rgb_file = 0;
    uint8_t *px = read_png(png, &h, &w, &rgb_file);
    TU_CHECK(px != NULL, "%s: does not decode", png);
    if (!px) return NULL;
    TU_CHECK(rgb_file, "%s: not an 8-bit RGB PNG", png);
    TU_CHECK(h == ny && w == nx, "%s: %lldx%lld, expected %lldx%lld", png, (long long)h,
             (long long)w, (long long)ny, (long long)nx);
    if (h != ny || w != nx) return px;
    for (int64_t y = 0; y < ny; y++)
        for (int64_t x = 0; x < nx; x++) {
            const uint8_t *p = px + 3 * (y * nx + x);
            uint32_t l = lab[y * nx + x];
            int c[3] = {-1, -1, -1};
            if (l) color(l, c);
            int painted = l && p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
            int edge = is_outline(lab, ny, nx, y, x);
            outlines += edge;
            if (painted != edge) {
                wrong++;
                if (first < 0) first = y * nx + x;
            }
            if (!edge && (grey ? !(p[0] == p[1] && p[1] == p[2]) : p[2] != 0)) bad_image++;
        }
    TU_CHECK(wrong == 0, "%s: %lld pixels disagree with the outline rule (first at y %lld x %lld)",
             png, (long long)wrong, (long long)(first / nx), (long long)(first % nx));
    TU_CHECK(bad_image == 0, "%s: %lld non-outline pixels are not image pixels", png,
             (long long)bad_image);
    TU_CHECK(outlines > 0, "%s: no outlines at all", png);
    printf("%s: %lldx%lld, %lld outline pixels, %lld wrong\n", png, (long long)h, (long long)w,
           (long long)outlines, (long long)wrong);
    if (outline_px) *outline_px = outlines;
    return px;
}

/* ---- unit ------------------------------------------------------------------------------------ */

static void unit(void)
{
    int64_t oy, ox;
    const int64_t sizes[][4] = {{512, 512, 512, 512},    {2048, 100, 2048, 100},
                                {2049, 1, 2048, 1},      {1, 100000, 1, 2048},
                                {2600, 3000, 1775, 2048}, {100000, 30000, 2048, 614}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        cp_overlay_size(sizes[k][0], sizes[k][1], &oy, &ox);
        TU_CHECK(oy == sizes[k][2] && ox == sizes[k][3], "size of %lldx%lld: %lldx%lld",
                 (long long)sizes[k][0], (long long)sizes[k][1], (long long)oy, (long long)ox);
    }
    TU_CHECK(cp_overlay_source(0, 512, 512) == 0 && cp_overlay_source(511, 512, 512) == 511,
             "identity sampling");
    TU_CHECK(cp_overlay_source(0, 2048, 3000) == 0 && cp_overlay_source(2047, 2048, 3000) == 2999 &&
                 cp_overlay_source(1000, 2048, 3000) == 1465,
             "downsampling: %lld %lld", (long long)cp_overlay_source(2047, 2048, 3000),
             (long long)cp_overlay_source(1000, 2048, 3000));
    int64_t bad = 0;
    for (uint32_t l = 1; l < 200000; l++) {
        uint8_t a[3];
        int b[3];
        cp_overlay_color(l, a);
        color(l, b);
        bad += a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[0] < 64 || a[1] < 64 ||
               a[2] < 64 || (a[0] == a[1] && a[1] == a[2]);
    }
    TU_CHECK(bad == 0, "%lld colours off the contract", (long long)bad);
    char name[4096];
    cp_overlay_path("/a/b/x_seg.h5", "/c/d/img.ome.tif", name, sizeof name);
    TU_CHECK(!strcmp(name, "/a/b/img.ome_cp_overlay.png"), "name: %s", name);
    cp_overlay_path("out.h5", "img", name, sizeof name);
    TU_CHECK(!strcmp(name, "./img_cp_overlay.png"), "name: %s", name);

    /* a large synthetic result: discs on a grid, ids above 65535 among them, masks along the
     * image's border, and a gradient */
    const int64_t ny = 2600, nx = 3000;
    uint32_t *lab = calloc((size_t)(ny * nx), sizeof *lab);
    float *img = malloc(sizeof *img * (size_t)(ny * nx));
    for (int64_t y = 0; y < ny; y++)
        for (int64_t x = 0; x < nx; x++) {
            int64_t cy = y / 90, cx = x / 90, dy = y % 90 - 45, dx = x % 90 - 45;
            if (dy * dy + dx * dx < 38 * 38)
                lab[y * nx + x] = (uint32_t)(cy * 100 + cx + 1 + (cy % 2) * 70000);
            if ((y < 6 && x < 400) || x >= nx - 5) /* masks on the image border: no outline there */
                lab[y * nx + x] = y < 6 ? 4000000000u : 7;
            img[y * nx + x] = (float)(x + y);
        }
    char err[CP_ERR_LEN];
    cp_h5out *h = NULL;
    const char *h5 = tu_path("%s/big_seg.h5", dir), *tif = tu_path("%s/big.tif", dir);
    int rc = cp_h5_create(h5, NULL, 1, ny, nx, 0, 0, 0, &h, err);
    if (!rc) rc = cp_h5_write_labels(h, 0, 0, 0, ny, nx, lab, err);
    if (!rc) rc = cp_h5_commit(h, err);
    if (!rc) rc = cp_tiff_write_f32(tif, img, 1, ny, nx, err);
    free(img);
    TU_CHECK(rc == 0, "synthetic inputs: %s", err);
    cp_params p;
    cp_params_default(&p);
    const char *png = tu_path("%s/big_cp_overlay.png", dir);
    double t0 = tu_now();
    rc = cp_overlay_save(h5, tif, &p, png, err);
    TU_CHECK(rc == 0, "overlay of the large result: %s", err);
    printf("2600x3000 overlay in %.2f s\n", tu_now() - t0);
    cp_overlay_size(ny, nx, &oy, &ox);
    uint32_t *small = malloc(sizeof *small * (size_t)(oy * ox));
    for (int64_t i = 0; i < oy; i++) /* nearest sampling at the pixel centres, spelled out */
        for (int64_t j = 0; j < ox; j++)
            small[i * ox + j] =
                lab[((2 * i + 1) * ny / (2 * oy)) * nx + (2 * j + 1) * nx / (2 * ox)];
    uint8_t *px = check_png(png, small, oy, ox, 1, NULL);
    int lo = 255, hi = 0;
    for (int64_t i = 0; px && i < oy * ox; i++)
        if (!small[i]) lo = px[3 * i] < lo ? px[3 * i] : lo, hi = px[3 * i] > hi ? px[3 * i] : hi;
    TU_CHECK(px && lo == 0 && hi == 255, "gradient not stretched to 0..255: %d .. %d", lo, hi);
    TU_CHECK(access(tu_path("%s.partial", png), F_OK) != 0, "a .partial is left");
    free(px);
    free(small);
    free(lab);

    /* an unwritable destination */
    const char *nowhere = tu_path("%s/no/such/folder/x_cp_overlay.png", dir);
    rc = cp_overlay_save(h5, tif, &p, nowhere, err);
    TU_CHECK(rc == CP_EIO && strstr(err, "no/such/folder/x_cp_overlay.png.partial"),
             "unwritable: %d %s", rc, err);
    rc = cp_overlay_save(tu_path("%s/missing.h5", dir), tif, &p, png, err);
    TU_CHECK(rc != 0 && strstr(err, "missing.h5"), "missing output: %d %s", rc, err);
}

/* ---- through the CLI ------------------------------------------------------------------------- */

static const char *synth_model(void)
{
    return tu_path("%s/models/synth_trained_nbase16.pth", tu_shared());
}

static const char *crop512(void)
{
    return tu_path("%s/reference/random_cp3_seed0_synth512/input.tif", tu_shared());
}

/* Runs the CLI (prefix "" or an mpirun line) on the 512 crop into dir/sub/o.h5 with an
 * overlay; checks it; returns the decoded pixels and the labels. */
static uint8_t *run_512(const char *prefix, const char *sub, const char *extra, uint32_t **labp)
{
    tu_run("mkdir -p %s/%s", dir, sub);
    int st = tu_run("%s %s --quiet --pretrained_model %s --image_path %s --chan 1 --chan2 2 "
                    "--diameter 30 --save_overlay --output %s/%s/o.h5 %s",
                    prefix, exe, synth_model(), crop512(), dir, sub, extra);
    TU_CHECK(st == 0, "%s run failed (%d)", sub, st);
    int64_t n = 0;
    uint32_t *lab = tu_h5_read_u32(tu_path("%s/%s/o.h5", dir, sub), "labels", &n);
    TU_CHECK(lab && n == 512 * 512, "%s: no 512x512 /labels", sub);
    if (!lab || n != 512 * 512) return NULL;
    double nm = tu_h5_attr(tu_path("%s/%s/o.h5", dir, sub), "n_masks");
    TU_CHECK(nm == 25, "%s: %g masks, expected 25", sub, nm);
    const char *png = tu_path("%s/%s/input_cp_overlay.png", dir, sub);
    TU_CHECK(access(tu_path("%s.partial", png), F_OK) != 0, "%s: a .partial is left", sub);
    *labp = lab;
    return check_png(png, lab, 512, 512, 0, NULL);
}

static void cli(void)
{
    uint32_t *lab = NULL;
    free(run_512("", "one", "--save_flows", &lab));
    free(lab);
    /* masks from the saved flows: outlines on a black background, named after the flows file */
    int st = tu_run("%s --quiet --flows %s/one/o.h5 --save_overlay --output %s/one/f.h5", exe, dir,
                    dir);
    int64_t n = 0;
    lab = tu_h5_read_u32(tu_path("%s/one/f.h5", dir), "labels", &n);
    TU_CHECK(st == 0 && lab && n == 512 * 512, "--flows run: exit %d", st);
    uint8_t *px = lab ? check_png(tu_path("%s/one/o_cp_overlay.png", dir), lab, 512, 512, 1, NULL)
                      : NULL;
    int64_t lit = 0;
    for (int64_t i = 0; px && i < 512 * 512; i++)
        lit += !is_outline(lab, 512, 512, i / 512, i % 512) && px[3 * i];
    TU_CHECK(px && lit == 0, "--flows: %lld background pixels are not black", (long long)lit);
    free(px);
    free(lab);
    /* a folder: one picture per image, next to its .h5 */
    tu_run("mkdir -p %s/set && cp %s %s/set/a.tif", dir, crop512(), dir);
    st = tu_run("%s --quiet --pretrained_model %s --dir %s/set --chan 1 --chan2 2 --diameter 30 "
                "--save_overlay", exe, synth_model(), dir);
    lab = tu_h5_read_u32(tu_path("%s/set/a_seg.h5", dir), "labels", &n);
    TU_CHECK(st == 0 && lab && n == 512 * 512, "--dir run: exit %d", st);
    if (lab) free(check_png(tu_path("%s/set/a_cp_overlay.png", dir), lab, 512, 512, 0, NULL));
    free(lab);
}

static void mpi(void)
{
    uint32_t *l1 = NULL, *l2 = NULL;
    uint8_t *a = run_512("", "one", "", &l1);
    uint8_t *b = run_512(MPIRUN " -n 2", "two", "--block 128", &l2);
    if (!a || !b) {
        free(a), free(b), free(l1), free(l2);
        return;
    }
    int64_t differ = 0;
    for (int64_t i = 0; i < 512 * 512; i++) {
        int64_t y = i / 512, x = i % 512;
        if (is_outline(l1, 512, 512, y, x) || is_outline(l2, 512, 512, y, x)) continue;
        differ += memcmp(a + 3 * i, b + 3 * i, 3) != 0;
    }
    TU_CHECK(differ == 0, "%lld image pixels differ between 1 and 2 ranks", (long long)differ);
    free(a), free(b), free(l1), free(l2);
}

static void stack(void)
{
    const char *img = tu_path("%s/data/synthetic/synth_stack_3x256.tif", tu_shared());
    int st = tu_run("%s --quiet --pretrained_model %s --image_path %s --z_axis 0 --diameter 30 "
                    "--stitch_threshold 0.25 --save_overlay --output %s/s_seg.h5",
                    exe, synth_model(), img, dir);
    TU_CHECK(st == 0, "stack run failed (%d)", st);
    int64_t n = 0;
    uint32_t *lab = tu_h5_read_u32(tu_path("%s/s_seg.h5", dir), "labels", &n);
    TU_CHECK(lab && n == 3 * 256 * 256, "no 3x256x256 /labels");
    if (!lab || n != 3 * 256 * 256) return;
    int64_t mid = 0, other = 0;
    free(check_png(tu_path("%s/synth_stack_3x256_cp_overlay.png", dir), lab + 256 * 256, 256, 256,
                   1, &mid));
    for (int64_t i = 0; i < 256 * 256; i++) /* the middle plane, not the first one */
        other += lab[i] != lab[256 * 256 + i];
    TU_CHECK(mid > 0 && other > 0, "planes 0 and 1 do not differ: the test cannot tell them apart");
    free(lab);
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(exe, sizeof exe, "%s/cellpose-mpi", tu_build_dir());
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "unit")) unit();
    else if (!strcmp(what, "cli")) cli();
    else if (!strcmp(what, "stack")) stack();
    else if (!strcmp(what, "mpi")) mpi();
    else return fprintf(stderr, "usage: test_overlay unit|cli|stack|mpi\n"), 2;
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
