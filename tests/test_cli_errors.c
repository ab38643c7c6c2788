/* Bad input through the real CLI: every parameter out of range, every unreadable input, an
 * unwritable output. Each case checks the exit status, that the one-line message names the file
 * or flag and the problem, and that no output (final or .partial) is left behind. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

#include "cp_err.h"
#include "testutil.h"
#include "tiff_io.h"

static char dir[1024], out[2048], errf[2048];
static const char *launch = ""; /* "mpirun ... " to run the program on several ranks */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

/* Runs cellpose-mpi with the arguments formatted from fmt; expects exit status `want` and both
 * needles (needle2 may be NULL) in its one-line message on stderr. */
static void expect(int want, const char *needle1, const char *needle2, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect(int want, const char *needle1, const char *needle2, const char *fmt, ...)
{
    char args[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int st = tu_run("%s%s/cellpose-mpi %s 2>%s >/dev/null", launch, tu_build_dir(), args, errf);
    char *all = slurp(errf), *msg = strstr(all, "cellpose-mpi: error: ");
    int nerr = 0;
    for (char *q = all; (q = strstr(q, "error: ")); q++) nerr++;
    if (!msg) msg = all;
    char *nl = strchr(msg, '\n');
    if (nl) nl[1] = 0;
    TU_CHECK(st == want, "[%s] exit %d, expected %d (stderr: %s)", args, st, want, all);
    TU_CHECK(strstr(msg, needle1) != NULL, "[%s] message lacks '%s': %s", args, needle1, msg);
    if (needle2) TU_CHECK(strstr(msg, needle2) != NULL, "[%s] message lacks '%s': %s", args, needle2, msg);
    TU_CHECK(nerr == 1, "[%s] expected one error line, got %d: %s", args, nerr, all);
    TU_CHECK(access(out, F_OK) != 0, "[%s] left %s behind", args, out);
    TU_CHECK(tu_run("ls %s.partial* %s.lock > /dev/null 2>&1", out, out) != 0,
             "[%s] left a .partial.<pid> or a .lock behind", args);
    printf("ok  exit %d  %s", st, msg);
    free(all);
}

static void write_f32(const char *path, int ny, int nx, float special)
{
    float *v = malloc(sizeof(float) * (size_t)(ny * nx));
    for (int i = 0; i < ny * nx; i++) v[i] = (float)(i % 97);
    v[ny * nx / 2] = special;
    char err[CP_ERR_LEN];
    if (cp_tiff_write_f32(path, v, 1, ny, nx, err)) fprintf(stderr, "%s\n", err), exit(2);
    free(v);
}

/* Runs cellpose-mpi with the arguments formatted from fmt, where an output would be the file
 * `input` (one that exists); expects exit status want, the one-line message with needle, and
 * input's bytes unchanged (compared with the copy `orig`). */
static void expect_kept_st(int want, const char *needle, const char *input, const char *orig,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void expect_kept_st(int want, const char *needle, const char *input, const char *orig,
                           const char *fmt, ...)
{
    char args[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int st = tu_run("%s/cellpose-mpi %s 2>%s >/dev/null", tu_build_dir(), args, errf);
    char *all = slurp(errf);
    int nerr = 0;
    for (char *q = all; (q = strstr(q, "error: ")); q++) nerr++;
    TU_CHECK(st == want, "[%s] exit %d, expected %d (stderr: %s)", args, st, want, all);
    TU_CHECK(strstr(all, needle) != NULL, "[%s] message lacks '%s': %s", args, needle, all);
    TU_CHECK(nerr == 1, "[%s] expected one error line, got %d: %s", args, nerr, all);
    TU_CHECK(tu_run("cmp -s %s %s", input, orig) == 0, "[%s] %s was changed", args, input);
    printf("ok  exit %d  %s", st, all);
    free(all);
}
#define expect_kept(...) expect_kept_st(2, __VA_ARGS__)

/* An output (the .h5, its .partial, the .work folder, the --save_tif masks, the --save_overlay
 * picture) that is the same file
 * as an input (image, model, flows, cellprob, job file, another image of --dir), directly, through
 * a symbolic link or a hard link: refused before anything is written, the input intact. */
static void outputs_onto_inputs(const char *model, const char *img)
{
    char d[1100], a[1200], m[1200], ao[1200], mo[1200];
    snprintf(d, sizeof d, "%s/same", dir);
    tu_run("mkdir -p %s/folder", d);
    snprintf(a, sizeof a, "%s/a.tif", d);
    snprintf(ao, sizeof ao, "%s/a.orig", d);
    snprintf(m, sizeof m, "%s/m.pth", d);
    snprintf(mo, sizeof mo, "%s/m.orig", d);
    tu_run("cp %s %s && cp %s %s && cp %s %s && cp %s %s", img, a, img, ao, model, m, model, mo);
    const char *same = "is the same file as";
    expect_kept(same, a, ao, "--pretrained_model %s --image_path %s --output %s", m, a, a);
    expect_kept(same, a, ao, "--pretrained_model %s --image_path %s --output %s --block 64", m, a, a);
    expect_kept(same, m, mo, "--pretrained_model %s --image_path %s --output %s", m, a, m);
    tu_run("ln -sf %s %s/link.h5 && ln -f %s %s/hard.h5", a, d, a, d);
    expect_kept(same, a, ao, "--pretrained_model %s --image_path %s --output %s/link.h5", m, a, d);
    expect_kept(same, a, ao, "--pretrained_model %s --image_path %s --output %s/hard.h5", m, a, d);
    /* derived names: <output>.partial, <output>.work, <stem>_cp_masks.tif of --save_tif */
    tu_run("cp %s %s/o.h5.partial && cp %s %s/o.h5.work", img, d, img, d);
    expect_kept(same, tu_path("%s/o.h5.partial", d), ao,
                "--pretrained_model %s --image_path %s/o.h5.partial --output %s/o.h5", m, d, d);
    expect_kept(same, tu_path("%s/o.h5.work", d), ao,
                "--pretrained_model %s --image_path %s/o.h5.work --output %s/o.h5 --block 64", m,
                d, d);
    tu_run("ln -sf a.tif %s/a_cp_masks.tif", d);
    expect_kept(same, a, ao, "--pretrained_model %s --image_path %s --output %s/x.h5 --save_tif",
                m, a, d);
    tu_run("rm -f %s/a_cp_masks.tif", d);
    tu_run("ln -sf a.tif %s/a_cp_overlay.png", d);
    expect_kept(same, a, ao, "--pretrained_model %s --image_path %s --output %s/x.h5 --save_overlay",
                m, a, d);
    tu_run("rm -f %s/a_cp_overlay.png", d);
    /* saved flows, cellprob, job file */
    expect_kept(same, a, ao, "--flows %s --output %s", a, a);
    expect_kept(same, a, ao, "--flows %s/dp.tif --cellprob_in %s --output %s", d, a, a);
    FILE *job = fopen(tu_path("%s/run.cfg", d), "w");
    fprintf(job, "image_path = \"%s\";\npretrained_model = \"%s\";\n", a, m);
    fclose(job);
    tu_run("cp %s/run.cfg %s/run.orig", d, d);
    expect_kept(same, tu_path("%s/run.cfg", d), tu_path("%s/run.orig", d),
                "--job %s/run.cfg --output %s/run.cfg", d, d);
    /* --dir: the output of one image is another image of the folder */
    tu_run("cp %s %s/folder/a.tif && cp %s %s/folder/b.tif && ln -sf b.tif %s/folder/a_seg.h5", img,
           d, img, d, d);
    expect_kept(same, tu_path("%s/folder/b.tif", d), ao, "--pretrained_model %s --dir %s/folder",
                m, d);
    /* a rerun with --save_tif: the masks of the first run are outputs, not images of the folder */
    tu_run("rm -f %s/folder/a_seg.h5 %s/folder/b.tif && cp %s %s/folder/a_cp_masks.tif", d, d,
           img, d);
    int st = tu_run("%s/cellpose-mpi --pretrained_model %s --dir %s/folder --save_tif --quiet "
                    "2>%s", tu_build_dir(), m, d, errf);
    TU_CHECK(st == 0 && access(tu_path("%s/folder/a_seg.h5", d), F_OK) == 0 &&
                 access(tu_path("%s/folder/a_cp_masks_seg.h5", d), F_OK) != 0,
             "--dir --save_tif rerun: exit %d, a_cp_masks.tif taken for an image?", st);
    /* <output>.work that is not a work folder of ours: a file, or a folder without our manifest,
     * is neither deleted nor emptied */
    tu_run("rm -rf %s/folder && cp %s %s/w.h5.work", d, img, d);
    expect_kept_st(1, "not a folder", tu_path("%s/w.h5.work", d), ao,
                   "--pretrained_model %s --image_path %s --output %s/w.h5 --block 64", m, a, d);
    tu_run("rm -f %s/w.h5.work && mkdir %s/w.h5.work && cp %s %s/w.h5.work/mine.tif", d, d, img, d);
    expect_kept_st(1, "with no manifest", tu_path("%s/w.h5.work/mine.tif", d), ao,
                   "--pretrained_model %s --image_path %s --output %s/w.h5 --block 64", m, a, d);
    tu_run("rm -rf %s", d);
}

/* A one-page float32 TIFF whose tifffile metadata gives the shape (1, ny, nx): a volume of one
 * plane. */
static void write_one_plane(const char *path, int ny, int nx)
{
    TIFF *t = TIFFOpen(path, "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, nx);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, ny);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, ny);
    char desc[64];
    snprintf(desc, sizeof desc, "{\"shape\": [1, %d, %d]}", ny, nx);
    TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, desc);
    float *v = malloc(sizeof(float) * (size_t)(ny * nx));
    for (int i = 0; i < ny * nx; i++) v[i] = (float)(i % 97);
    TIFFWriteEncodedStrip(t, 0, v, (tmsize_t)(sizeof(float) * (size_t)(ny * nx)));
    TIFFClose(t);
    free(v);
}

/* --do_3D (CELLPOSE_ALGORITHM.md §8.1): every refused value and combination, by flags, by a job
 * file and on several ranks, each a one-line reason with no output; flow_threshold is accepted
 * (tests/test_e2e.c checks that it is recorded as unused). */
static void do3d_refusals(const char *base)
{
    char vol[2048];
    snprintf(vol, sizeof vol, "%s",
             tu_need(tu_path("%s/data/synthetic/synth_vol_17x61x80.tif", tu_shared())));
    const char *bs = "--bsize 256: not with --do_3D (Cellpose's 3-D mode always tiles at 224)";
    expect(2, bs, NULL, "%s --image_path %s --do_3D --bsize 256", base, vol);
    expect(2, "--stitch_threshold: not with --do_3D", "2.5-D mode",
           "%s --image_path %s --do_3D --stitch_threshold 0.25", base, vol);
    expect(2, "--protrusions: not with --do_3D (not defined in 3-D yet)", NULL,
           "%s --image_path %s --do_3D --protrusions", base, vol);
    expect(2, "--anisotropy: 0 must be > 0", NULL, "%s --image_path %s --do_3D --anisotropy 0", base, vol);
    expect(2, "--anisotropy", "outside", "%s --image_path %s --do_3D --anisotropy -2", base, vol);
    expect(2, "--anisotropy", "'inf' is not a number", "%s --image_path %s --anisotropy inf", base, vol);
    expect(2, "--anisotropy", "'nan' is not a number", "%s --image_path %s --anisotropy nan", base, vol);
    expect(2, "--anisotropy", "'1e999' is not a number", "%s --image_path %s --anisotropy 1e999", base, vol);
    expect(2, "--flow3D_smooth", "outside", "%s --image_path %s --do_3D --flow3D_smooth -1", base, vol);
    /* images of fewer than 2 planes */
    write_f32(tu_path("%s/plane.tif", dir), 64, 64, 1.0f);
    expect(1, "plane.tif", "is 2-D: --do_3D and stitching", "%s --image_path %s/plane.tif --do_3D", base, dir);
    write_one_plane(tu_path("%s/one.tif", dir), 64, 64);
    expect(1, "one.tif: --do_3D needs a volume of at least 2 planes, the image has 1", NULL,
           "%s --image_path %s/one.tif --z_axis 0 --do_3D", base, dir);
    expect(1, "one.tif: --do_3D needs a volume of at least 2 planes, the image has 1", NULL,
           "%s --image_path %s/one.tif --z_axis 0 --do_3D --block 64", base, dir); /* blocks */
    launch = "mpirun --oversubscribe -n 2 ";
    expect(1, "plane.tif", "is 2-D: --do_3D and stitching", "%s --image_path %s/plane.tif --do_3D",
           base, dir);
    launch = "";
    /* the same refusals from a job file (LeakSanitizer off in the child, as in test_jobfile.c:
     * its tracer crashes at exit in an Open MPI program that used libconfig) */
    launch = "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 ";
    FILE *job = fopen(tu_path("%s/vol.cfg", dir), "w");
    fprintf(job, "image_path = \"%s\";\ndo_3D = true;\nbsize = 256;\nflow_threshold = 0.9;\n", vol);
    fclose(job);
    expect(2, bs, NULL, "%s --job %s/vol.cfg", base, dir);
    job = fopen(tu_path("%s/vol.cfg", dir), "w");
    fprintf(job, "image_path = \"%s\";\ndo_3D = true;\nanisotropy = 0.0;\n", vol);
    fclose(job);
    expect(2, "--anisotropy: 0 must be > 0", NULL, "%s --job %s/vol.cfg", base, dir);
    job = fopen(tu_path("%s/vol.cfg", dir), "w");
    fprintf(job, "image_path = \"%s\";\ndo_3D = true;\nprotrusions = true;\n", vol);
    fclose(job);
    expect(2, "--protrusions: not with --do_3D", NULL, "%s --job %s/vol.cfg", base, dir);
    launch = "";
    /* over 3-D blocks (N ranks): the refusals are agreed on by every rank */
    launch = "mpirun --oversubscribe -n 2 ";
    expect(2, bs, NULL, "%s --image_path %s --do_3D --bsize 256", base, vol);
    expect(2, "--protrusions: not with --do_3D", NULL, "%s --image_path %s --do_3D --protrusions",
           base, vol);
    launch = "";
}

/* --flows with --do_3D: flows of the other dimension, HDF5 or TIFF pair, and a TIFF pair whose
 * pages do not pair up, each a one-line error with no output, on one process and over 3-D
 * blocks. The flows files come from the oracle's 2-D and 3-D dP/cellprob. */
static void flows3d_bad_input(void)
{
    const char *ref = tu_path("%s/reference", tu_shared());
    char v[2048], f[2048], vh5[2048], fh5[2048];
    snprintf(v, sizeof v, "%s/tiny_nbase8_vol3d", ref);
    snprintf(f, sizeof f, "%s/random_cp3_seed0_synth512", ref);
    tu_need(tu_path("%s/dP.tif", v)), tu_need(tu_path("%s/dP.tif", f));
    snprintf(vh5, sizeof vh5, "%s/vol_flows.h5", dir);
    snprintf(fh5, sizeof fh5, "%s/flat_flows.h5", dir);
    int st = tu_run("%s/cellpose-mpi --quiet --flows %s/dP.tif --cellprob_in %s/cellprob.tif "
                    "--do_3D --save_flows --output %s", tu_build_dir(), v, v, vh5);
    st |= tu_run("%s/cellpose-mpi --quiet --flows %s/dP.tif --cellprob_in %s/cellprob.tif "
                 "--save_flows --output %s", tu_build_dir(), f, f, fh5);
    TU_CHECK(st == 0, "cannot make the flows files");
    expect(1, "vol_flows.h5: 3-D flows (/flows of 3 x 17 x 61 x 80, a --do_3D output): give "
           "--do_3D", NULL, "--flows %s --output %s", vh5, out);
    expect(1, "flat_flows.h5: 2-D flows (/flows of rank 3 with 2 flow channels, not (3, Z, Y, X)): "
           "leave out --do_3D", NULL, "--flows %s --do_3D --output %s", fh5, out);
    expect(1, "dP.tif: 2 page(s) of 512x512 with 1 sample(s) beside 1 of 512x512",
           "--do_3D reads dP as (3, Z, Y, X) pages and cellprob as (Z, Y, X) of the same Y, X",
           "--flows %s/dP.tif --cellprob_in %s/cellprob.tif --do_3D --output %s", f, f, out);
    expect(1, "dP.tif: 51 page(s) of 61x80 with 1 sample(s) beside 12 of 80x88", NULL,
           "--flows %s/dP.tif --cellprob_in %s/synth_trained_nbase16_vol3d_aniso/cellprob.tif "
           "--do_3D --output %s", v, ref, out);
    expect(1, "dP.tif: expected 2 pages per page of", NULL,
           "--flows %s/dP.tif --cellprob_in %s/cellprob.tif --output %s", v, v, out);
    /* the same files over 3-D blocks (mpi/dvolume.c): the same errors */
    expect(1, "flat_flows.h5: 2-D flows (/flows of rank 3 with 2 flow channels, not (3, Z, Y, X)): "
           "leave out --do_3D", NULL, "--flows %s --do_3D --block 64 --output %s", fh5, out);
    launch = "mpirun --oversubscribe -n 2 ";
    expect(1, "dP.tif: 51 page(s) of 61x80 with 1 sample(s) beside 12 of 80x88", NULL,
           "--flows %s/dP.tif --cellprob_in %s/synth_trained_nbase16_vol3d_aniso/cellprob.tif "
           "--do_3D --output %s", v, ref, out);
    launch = "";
}

/* A deflate TIFF whose header says 65535 x 65535 uint8 in one strip that holds 64 bytes. One
 * process works in blocks of 2048 (the whole plane would need 4 GiB for the pixels and more for
 * the network input), so under an 8 GB address-space limit the run gets as far as the strip's
 * data: the message must name the file and the truncated data, not a bare "out of memory" or a
 * crash. (Skipped under AddressSanitizer, which needs far more address space.) */
static void huge_header(const char *model)
{
    if (getenv("ASAN_OPTIONS")) {
        printf("skip  65535 x 65535 header (ASan)\n");
        return;
    }
    const char *p = tu_path("%s/huge.tif", dir);
    TIFF *t = TIFFOpen(p, "w");
    unsigned char buf[64];
    memset(buf, 7, sizeof buf);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 8);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 8);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 8);
    TIFFWriteEncodedStrip(t, 0, buf, sizeof buf);
    TIFFClose(t);
    FILE *f = fopen(p, "r+b");
    unsigned char b[4096];
    size_t n = fread(b, 1, sizeof b, f);
    uint32_t ifd;
    uint16_t count;
    memcpy(&ifd, b + 4, 4);
    memcpy(&count, b + ifd, 2);
    for (int i = 0; i < count && ifd + 14 + 12 * i <= n; i++) {
        unsigned char *e = b + ifd + 2 + 12 * i;
        uint16_t tag, type = 4;
        uint32_t one = 1, v = 65535;
        memcpy(&tag, e, 2);
        if (tag != TIFFTAG_IMAGEWIDTH && tag != TIFFTAG_IMAGELENGTH && tag != TIFFTAG_ROWSPERSTRIP)
            continue;
        memcpy(e + 2, &type, 2), memcpy(e + 4, &one, 4), memcpy(e + 8, &v, 4);
    }
    fseek(f, 0, SEEK_SET);
    fwrite(b, 1, n, f);
    fclose(f);
    int st = tu_run("(ulimit -v 8000000; exec %s/cellpose-mpi --pretrained_model %s "
                    "--image_path %s --output %s) 2>%s >/dev/null", tu_build_dir(), model, p, out,
                    errf);
    char *all = slurp(errf), *msg = strstr(all, "error: ");
    TU_CHECK(st == 1 && msg && strstr(msg, "huge.tif: ") && strstr(msg, "strip 0") &&
                 strstr(msg, "truncated or corrupt data"),
             "65535 x 65535 header: exit %d: %s", st, all);
    TU_CHECK(access(out, F_OK) != 0, "65535 x 65535 header: left %s behind", out);
    printf("ok  exit %d  %s", st, msg ? msg : all);
    free(all);
}

int main(void)
{
    char model[2048], img[2048], bad_out[2048];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(out, sizeof out, "%s/out.h5", dir);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    snprintf(model, sizeof model, "%s", tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared())));
    snprintf(img, sizeof img, "%s",
             tu_need(tu_path("%s/reference/random_cp3_seed0_synth512/input.tif", tu_shared())));
    char base[8192];
    snprintf(base, sizeof base, "--pretrained_model %s --output %s", model, out);

    /* parameters */
    expect(2, "--tile_overlap", "outside [0.05, 0.5]", "%s --image_path %s --tile_overlap 0.6", base, img);
    expect(2, "--tile_overlap", "outside", "%s --image_path %s --tile_overlap 0.01", base, img);
    expect(2, "--bsize", "not a multiple of 16", "%s --image_path %s --bsize 100", base, img);
    expect(2, "--bsize", "outside", "%s --image_path %s --bsize 0", base, img);
    expect(2, "--niter", "outside", "%s --image_path %s --niter -1", base, img);
    expect(2, "--niter", "not an integer", "%s --image_path %s --niter 2.5", base, img);
    expect(2, "--diameter", "outside", "%s --image_path %s --diameter -3", base, img);
    expect(2, "--diameter", "not a number", "%s --image_path %s --diameter abc", base, img);
    /* decimal numbers only: strtod alone takes hex, "inf", "nan" and leading blanks */
    expect(2, "--diameter", "'0x10' is not a number", "%s --image_path %s --diameter 0x10", base, img);
    expect(2, "--diameter", "'inf' is not a number", "%s --image_path %s --diameter inf", base, img);
    expect(2, "--cellprob_threshold", "decimal digits only", "%s --image_path %s --cellprob_threshold nan", base, img);
    expect(2, "--niter", "'0x10' is not a number", "%s --image_path %s --niter 0x10", base, img);
    expect(2, "--min_size", "decimal digits only", "%s --image_path %s --min_size ' 15'", base, img);
    expect(2, "--flow_threshold", "outside", "%s --image_path %s --flow_threshold -1", base, img);
    expect(2, "--chan", "outside", "%s --image_path %s --chan 7", base, img);
    expect(2, "--invert", "--no_norm", "%s --image_path %s --invert --no_norm", base, img);
    expect(2, "--invert", "norm_percentile", "%s --image_path %s --invert --norm_percentile 2 98", base, img);
    expect(2, "--norm_percentile", "below", "%s --image_path %s --norm_percentile 50 10", base, img);
    expect(2, "--stitch_threshold", "outside", "%s --image_path %s --stitch_threshold 2", base, img);
    expect(2, "--min_size", "needs a value", "%s --image_path %s --min_size", base, img);
    expect(2, "unknown option '--bogus'", NULL, "%s --image_path %s --bogus 3", base, img);
    expect(2, "exactly one of --image_path", NULL, "%s", base);
    expect(2, "--pretrained_model", "required", "--image_path %s --output %s", img, out);

    /* model files */
    expect(1, "nothere.pth", NULL, "--pretrained_model %s/nothere.pth --image_path %s --output %s", dir, img, out);
    tu_run("head -c 100000 %s > %s/trunc.pth", model, dir);
    expect(1, "trunc.pth", NULL, "--pretrained_model %s/trunc.pth --image_path %s --output %s", dir, img, out);
    tu_run("head -c 5000 /dev/urandom > %s/random.pth", dir);
    expect(1, "random.pth", NULL, "--pretrained_model %s/random.pth --image_path %s --output %s", dir, img, out);

    /* a model given by name that is not installed: where it was looked for, how to get it */
    setenv("CELLPOSE_LOCAL_MODELS_PATH", dir, 1);
    expect(1, tu_path("cyto3: model not found: not a file, and not in %s", dir),
           tu_path("copy the file from a Python Cellpose install's ~/.cellpose/models into %s",
                   dir),
           "--pretrained_model cyto3 --image_path %s --output %s", img, out);
    unsetenv("CELLPOSE_LOCAL_MODELS_PATH");

    /* images */
    expect(1, "missing.tif", NULL, "%s --image_path %s/missing.tif", base, dir);
    tu_run("head -c 3000 /dev/urandom > %s/garbage.tif", dir);
    expect(1, "garbage.tif", NULL, "%s --image_path %s/garbage.tif", base, dir);
    tu_run("head -c 40000 %s > %s/cut.tif", img, dir);
    expect(1, "cut.tif", NULL, "%s --image_path %s/cut.tif --chan 1 --chan2 2", base, dir);
    write_f32(tu_path("%s/nan.tif", dir), 64, 64, NAN);
    expect(1, "nan.tif", "NaN or Inf", "%s --image_path %s/nan.tif", base, dir);
    write_f32(tu_path("%s/inf.tif", dir), 64, 64, INFINITY);
    expect(1, "inf.tif", "NaN or Inf", "%s --image_path %s/inf.tif", base, dir);
    expect(1, "input.tif", "channel", "%s --image_path %s --chan 3 --chan2 1", base, img);
    write_f32(tu_path("%s/flat.tif", dir), 64, 64, 1.0f);
    expect(1, "flat.tif", NULL, "%s --image_path %s/flat.tif --stitch_threshold 0.3", base, dir);

    /* output */
    snprintf(bad_out, sizeof bad_out, "%s/no/such/dir/out.h5", dir);
    expect(1, bad_out, NULL, "--pretrained_model %s --image_path %s --output %s --chan 1 --chan2 2", model, img, bad_out);

    /* saved flows */
    expect(1, "input.tif", NULL, "--flows %s --output %s", img, out);
    expect(1, "nothere.h5", NULL, "--flows %s/nothere.h5 --output %s", dir, out);
    expect(2, "--flows", NULL, "--flows %s --image_path %s --output %s", img, img, out);

    outputs_onto_inputs(model, img);
    huge_header(model);
    do3d_refusals(base);
    flows3d_bad_input();

    tu_run("rm -rf %s", dir);
    return tu_finish();
}
