/* Operational behaviour of distributed runs through the CLI under mpirun (issue 3):
 *   stack        a 3-plane stack spread over ranks, per plane and stitched: identical to one process
 *   stack8       an 8-plane stack (a blank plane inside) stitched on 1-4 ranks (--block: the
 *                distributed driver also on one rank): /labels, /cells, /flows identical to one
 *                process; per-plane labels on 3 ranks too; masks of its saved flows (--flows)
 *                stitched on 1-3 ranks as by one process, also read as the TIFF pair
 *   dataset      a folder with one corrupt image: reported and skipped, the others identical
 *   kill_network kill -9 of a rank during the network phase, then --resume: identical labels,
 *                finished network blocks reused
 *   kill_dynamics kill -9 during the dynamics, then --resume: identical, every block reused
 *   signal       SIGUSR1 in the network phase: stop at the next block boundary, exit status 3;
 *                --resume finishes identically
 *   signal_stack the same in a stitched stack: --resume reuses its planes' network blocks
 *   signal_volume SIGUSR1 after the network phase of --do_3D over 3-D blocks: stop at the next
 *                phase, exit status 3; --resume reuses every "dp3" block, labels identical
 *   bad_block    a corrupt strip read by one rank: the job stops with that rank's message, no output
 *   h5py         a 3-rank output read by h5py: layout, chunking + deflate, /cells, attributes
 * usage: test_dist_ops NAME */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cp_err.h"
#include "testutil.h"
#include "tiff_io.h"

#include <hdf5.h>
#include <tiffio.h>

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

static char dir[1024], exe[2048];

static int same_labels(const char *a, const char *b)
{
    int64_t n, m;
    uint32_t *x = tu_h5_read_u32(a, "labels", &n), *y = tu_h5_read_u32(b, "labels", &m);
    int64_t diff = x && y && n == m ? tu_count_diff_u32(x, y, n) : -1;
    printf("%s vs %s: %lld pixels differ\n", a, b, (long long)diff);
    free(x), free(y);
    return diff == 0;
}

static void stack(void)
{
    const char *model = tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared()));
    const char *img = tu_need(tu_path("%s/data/synthetic/synth_stack_3x256.tif", tu_shared()));
    tu_need(tu_path("%s/reference/synth_trained_nbase16_stack3/masks.tif", tu_shared()));
    for (int stitch = 0; stitch < 2; stitch++) {
        const char *extra = stitch ? "--stitch_threshold 0.25" : "";
        int st = tu_run("%s --quiet --pretrained_model %s --image_path %s --z_axis 0 %s --output "
                        "%s/ref.h5", exe, model, img, extra, dir);
        TU_CHECK(st == 0, "single process failed");
        if (stitch) {
            int64_t n;
            uint32_t *l = tu_h5_read_u32(tu_path("%s/ref.h5", dir), "labels", &n);
            tu_tiff o = tu_read_tiff(tu_path("%s/reference/synth_trained_nbase16_stack3/masks.tif",
                                             tu_shared()));
            TU_CHECK(l && n == o.n && tu_same_up_to_renumbering(l, o.u32, n),
                     "stitched stack differs from the oracle");
            free(l), tu_tiff_free(&o);
        }
        for (int np = 2; np <= 4; np++) {
            st = tu_run(MPIRUN " -n %d %s --quiet --pretrained_model %s --image_path %s --z_axis 0"
                        " %s --output %s/np.h5", np, exe, model, img, extra, dir);
            TU_CHECK(st == 0 && same_labels(tu_path("%s/ref.h5", dir), tu_path("%s/np.h5", dir)),
                     "stack%s on %d ranks differs", stitch ? " (stitched)" : "", np);
        }
    }
}

/* An 8-plane stack of 2 x 256 x 256 float pages (ZCYX, tifffile's JSON shape): crops of
 * synth_1024 moving 8 pixels right per plane (cells continue over the planes), plane 5 blank. */
static void write_stack8(const char *path)
{
    tu_tiff s = tu_read_tiff(tu_path("%s/data/synthetic/synth_1024.tif", tu_shared()));
    TIFF *t = TIFFOpen(path, "w");
    float row[256];
    for (int z = 0; t && z < 8; z++)
        for (int c = 0; c < 2; c++) {
            TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 256);
            TIFFSetField(t, TIFFTAG_IMAGELENGTH, 256);
            TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
            TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
            TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
            TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
            TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
            TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 256);
            if (z == 0 && c == 0)
                TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, "{\"shape\": [8, 2, 256, 256]}");
            for (int y = 0; y < 256; y++) {
                for (int x = 0; x < 256; x++)
                    row[x] = z == 5 ? 0 : s.f32[(c * s.ny + 300 + y) * s.nx + 300 + 8 * z + x];
                TIFFWriteScanline(t, row, (uint32_t)y, 0);
            }
            TIFFWriteDirectory(t);
        }
    if (t) TIFFClose(t);
    TU_CHECK(t != NULL, "%s: cannot write", path);
    tu_tiff_free(&s);
}

/* /cells of two outputs: the same rows, byte for byte (native layout). */
static int same_cells(const char *a, const char *b)
{
    unsigned char *v[2] = {NULL, NULL};
    hsize_t rows[2] = {0, 0};
    size_t size[2] = {0, 0};
    const char *path[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        hid_t f = H5Fopen(path[k], H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "cells", H5P_DEFAULT), sp = H5Dget_space(d);
        hid_t ft = H5Dget_type(d), nt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
        H5Sget_simple_extent_dims(sp, &rows[k], NULL);
        size[k] = H5Tget_size(nt);
        v[k] = calloc(rows[k] + 1, size[k]);
        if (H5Dread(d, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v[k]) < 0) rows[k] = (hsize_t)-k - 1;
        H5Tclose(nt), H5Tclose(ft), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
    }
    int same = rows[0] == rows[1] && size[0] == size[1] && rows[0] > 0 &&
               !memcmp(v[0], v[1], rows[0] * size[0]);
    printf("%s vs %s: /cells %llu and %llu rows, %s\n", a, b, (unsigned long long)rows[0],
           (unsigned long long)rows[1], same ? "identical" : "differ");
    free(v[0]), free(v[1]);
    return same;
}

/* The float dataset `set` of two outputs, bit for bit. */
static int same_f32(const char *a, const char *b, const char *set)
{
    int64_t n = 0, m = 0;
    float *x = tu_h5_read_f32(a, set, &n), *y = tu_h5_read_f32(b, set, &m);
    int same = x && y && n == m && n > 0 && !memcmp(x, y, sizeof *x * (size_t)n);
    free(x), free(y);
    return same;
}

static void stack8(void)
{
    const char *model = tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared()));
    const char *img = tu_path("%s/stack8.tif", dir), *ref = tu_path("%s/ref8.h5", dir);
    char args[4096];
    write_stack8(img);
    for (int stitch = 1; stitch >= 0; stitch--) {
        snprintf(args, sizeof args, "--quiet --pretrained_model %s --image_path %s --z_axis 0 "
                 "--chan 1 --chan2 2 --diameter 30 --save_flows%s", model, img,
                 stitch ? " --stitch_threshold 0.25" : "");
        int st = tu_run("%s %s --output %s", exe, args, ref);
        TU_CHECK(st == 0, "single process failed");
        if (stitch) { /* the stack is a real test: many masks, some through several planes */
            int64_t n;
            uint32_t *l = tu_h5_read_u32(ref, "labels", &n), most = 0, deep = 0;
            for (int64_t i = 0; l && i < n; i++) most = l[i] > most ? l[i] : most;
            int64_t plane = 256 * 256;
            for (int64_t i = 0; l && i < plane; i++) /* ids of plane 1 still there on plane 4 */
                for (int64_t j = 0; l[plane + i] && j < plane; j += 97)
                    if (l[4 * plane + j] == l[plane + i]) { deep++; break; }
            printf("stitched reference: %u masks, %lld pixels of plane 1 whose id reaches "
                   "plane 4\n", most, (long long)deep);
            TU_CHECK(l && most > 10 && deep > 0, "the stitched reference is trivial");
            free(l);
        }
        for (int np = stitch ? 1 : 3; np <= (stitch ? 4 : 3); np++) {
            const char *out = tu_path("%s/np8_%d.h5", dir, np);
            st = tu_run(MPIRUN " -n %d %s %s --block 256 --output %s", np, exe, args, out);
            TU_CHECK(st == 0 && same_labels(ref, out), "stack8%s on %d ranks: /labels differ",
                     stitch ? " (stitched)" : "", np);
            TU_CHECK(same_cells(ref, out), "stack8 on %d ranks: /cells differ", np);
            TU_CHECK(same_f32(ref, out, "flows") && same_f32(ref, out, "cellprob"),
                     "stack8 on %d ranks: /flows or /cellprob differ", np);
        }
        if (!stitch) continue;
        /* the saved flows of the stack (--flows): masks per plane, stitched, on 1-3 ranks */
        const char *fref = tu_path("%s/flows8.h5", dir);
        st = tu_run("%s --quiet --flows %s --stitch_threshold 0.25 --output %s", exe, ref, fref);
        TU_CHECK(st == 0, "single process from the saved flows failed");
        for (int np = 1; np <= 3; np++) {
            const char *out = tu_path("%s/flows8_%d.h5", dir, np);
            st = tu_run(MPIRUN " -n %d %s --quiet --flows %s --stitch_threshold 0.25 --block 256 "
                        "--output %s", np, exe, ref, out);
            TU_CHECK(st == 0 && same_labels(fref, out) && same_cells(fref, out),
                     "stack8 from its saved flows on %d ranks differs", np);
        }
        /* the same flows as the TIFF pair: dP (2, Z, Y, X) pages dY then dX, cellprob (Z, Y, X) */
        int64_t n = 0, m = 0, plane = 256 * 256;
        float *fl = tu_h5_read_f32(ref, "flows", &n), *cp = tu_h5_read_f32(ref, "cellprob", &m);
        float *dp = malloc(sizeof *dp * (size_t)(n ? n : 1));
        for (int64_t z = 0; fl && z < 8; z++) /* (Z, 2, Y, X) -> (2, Z, Y, X) */
            for (int c = 0; c < 2; c++)
                memcpy(dp + (c * 8 + z) * plane, fl + (z * 2 + c) * plane, sizeof *dp * plane);
        char err[CP_ERR_LEN];
        const char *dpt = tu_path("%s/dP8.tif", dir), *cpt = tu_path("%s/cellprob8.tif", dir);
        TU_CHECK(fl && cp && n == 16 * plane && m == 8 * plane &&
                     !cp_tiff_write_f32(dpt, dp, 16, 256, 256, err) &&
                     !cp_tiff_write_f32(cpt, cp, 8, 256, 256, err),
                 "cannot write the flows of the stack as TIFFs");
        free(fl), free(cp), free(dp);
        const char *tout = tu_path("%s/flows8_tif.h5", dir);
        st = tu_run(MPIRUN " -n 3 %s --quiet --flows %s --cellprob_in %s --stitch_threshold 0.25 "
                    "--output %s", exe, dpt, cpt, tout);
        TU_CHECK(st == 0 && same_labels(fref, tout) && same_cells(fref, tout),
                 "stack8 from its flows as TIFFs on 3 ranks differs");
    }
}

/* A 2-channel float crop of synth_1024 (rows y0..y0+n) as a TIFF. */
static void write_crop(const char *path, int64_t y0, int64_t n)
{
    tu_tiff s = tu_read_tiff(tu_path("%s/data/synthetic/synth_1024.tif", tu_shared()));
    float *v = malloc(sizeof *v * (size_t)(2 * n * n));
    for (int c = 0; c < 2; c++)
        for (int64_t y = 0; y < n; y++)
            memcpy(v + (c * n + y) * n, s.f32 + (c * s.ny + y0 + y) * s.nx, sizeof *v * (size_t)n);
    char err[CP_ERR_LEN];
    if (cp_tiff_write_f32(path, v, 2, n, n, err)) fprintf(stderr, "%s\n", err), exit(2);
    free(v), tu_tiff_free(&s);
}

static void dataset(void)
{
    tu_run("mkdir -p %s/set", dir);
    write_crop(tu_path("%s/set/a.tif", dir), 0, 256);
    write_crop(tu_path("%s/set/c.tif", dir), 400, 256);
    tu_run("head -c 5000 /dev/urandom > %s/set/b.tif", dir);
    const char *model = tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared()));
    int st = tu_run(MPIRUN " -n 3 %s --quiet --pretrained_model %s --dir %s/set --chan 1 --chan2 2"
                    " 2> %s/err.txt", exe, model, dir, dir);
    TU_CHECK(st == 1, "a dataset with a corrupt image must exit 1, got %d", st);
    TU_CHECK(tu_run("grep -q 'b.tif' %s/err.txt", dir) == 0, "the corrupt image is not named");
    TU_CHECK(tu_run("grep -q '1 of 3 images failed' %s/err.txt", dir) == 0, "no failure count");
    TU_CHECK(access(tu_path("%s/set/b_seg.h5", dir), F_OK) != 0, "output for the corrupt image");
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "c" : "a";
        st = tu_run("%s --quiet --pretrained_model %s --image_path %s/set/%s.tif --chan 1 --chan2 2"
                    " --output %s/%s_ref.h5", exe, model, dir, name, dir, name);
        TU_CHECK(st == 0 && same_labels(tu_path("%s/set/%s_seg.h5", dir, name),
                                        tu_path("%s/%s_ref.h5", dir, name)),
                 "dataset image %s differs from a single run", name);
    }
}

/* The slow run the interruption tests interrupt: full-width random net (a slow network phase),
 * niter 6000 (a long dynamics phase), blocks of 256 on 2 ranks. */
static char slow[4096];

static void slow_plane(void)
{
    snprintf(slow, sizeof slow, "--pretrained_model %s --image_path %s --chan 1 --chan2 2 "
             "--niter 6000 --cellprob_threshold -2 --block 128 --output %s/out.h5",
             tu_need(tu_path("%s/models/random_cp3_seed0.pth", tu_shared())),
             tu_need(tu_path("%s/reference/random_cp3_seed0_bsize512_niter2000/input.tif",
                             tu_shared())),
             dir);
}

/* The stack the stack interruption stops: stack8 (8 planes of 256 x 256) with the full-width
 * random net, each plane in 4 blocks of 128, stitched. */
static void slow_stack(void)
{
    const char *img = tu_path("%s/stack8.tif", dir);
    write_stack8(img);
    snprintf(slow, sizeof slow, "--pretrained_model %s --image_path %s --z_axis 0 --chan 1 "
             "--chan2 2 --cellprob_threshold -2 --block 128 --stitch_threshold 0.25 "
             "--output %s/out.h5", tu_need(tu_path("%s/models/random_cp3_seed0.pth", tu_shared())),
             img, dir);
}

/* synth_vol_17x61x80 tiled 2 x 2 in Y and X: 17 pages of 122 x 160, float32. */
static void write_volume2x2(const char *path)
{
    tu_tiff s = tu_read_tiff(tu_need(tu_path("%s/data/synthetic/synth_vol_17x61x80.tif",
                                             tu_shared())));
    TIFF *t = TIFFOpen(path, "w");
    float row[160];
    for (int64_t z = 0; t && z < s.pages; z++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)(2 * s.nx));
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)(2 * s.ny));
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
        TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)(2 * s.ny));
        for (int64_t y = 0; y < 2 * s.ny; y++) {
            for (int64_t x = 0; x < 2 * s.nx && x < 160; x++)
                row[x] = s.f32[(z * s.ny + y % s.ny) * s.nx + x % s.nx];
            TIFFWriteScanline(t, row, (uint32_t)y, 0);
        }
        TIFFWriteDirectory(t);
    }
    if (t) TIFFClose(t);
    TU_CHECK(t != NULL && s.nx == 80, "%s: cannot write", path);
    tu_tiff_free(&s);
}

/* The volume the 3-D interruption stops: synth_vol_17x61x80 tiled to 17x122x160 with the
 * trained net, in 3-D over 20 blocks of 32 voxels. The network stores them at the end of its one
 * wave (mpi/dnet3.h), so the signal comes after the network phase, in the dynamics of real
 * masks (about a second here), and the run must stop at the next phase. */
static void slow_volume(void)
{
    const char *img = tu_path("%s/vol.tif", dir);
    write_volume2x2(img);
    snprintf(slow, sizeof slow, "--pretrained_model %s --image_path %s --z_axis 0 --do_3D "
             "--diameter 30 --block 32 --output %s/out.h5",
             tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared())), img, dir);
}

/* kill -9 of the newest cellpose-mpi process whose command line names our output: one rank. */
static void kill_one_rank(void)
{
    long pids[64], victim = -1;
    int n = tu_cellpose_pids(tu_path("%s/out.h5", dir), pids, 64);
    for (int i = 0; i < n; i++) victim = pids[i] > victim ? pids[i] : victim;
    if (victim > 0) kill((pid_t)victim, SIGKILL);
}

/* Starts the slow run on 2 ranks in the background; returns mpirun's pid. */
static pid_t start_slow(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "exec " MPIRUN " -n 2 %s %s > %s/run1.txt 2>&1", exe,
                 slow, dir);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits (up to 600 s) until the run has at least `blocks` network blocks on disk, or (blocks 0)
 * has printed the summary that ends its network phase; 0 once it has, -1 if the run ended first. */
static int wait_for(pid_t run, const char *work, int blocks)
{
    for (int i = 0; i < 6000; i++) {
        if (blocks ? tu_blocks_on_disk(work) >= blocks
                   : tu_run("grep -q 'tile evaluations' %s/run1.txt", dir) == 0)
            return 0;
        if (waitpid(run, NULL, WNOHANG) == run) return -1;
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    return -1;
}

/* Reference without interruption, then the interrupted run and its --resume. */
static void interrupted(const char *how)
{
    int st = tu_run(MPIRUN " -n 2 %s %s --quiet > /dev/null 2>&1 && mv %s/out.h5 %s/ref.h5", exe,
                    slow, dir, dir);
    TU_CHECK(st == 0, "uninterrupted run failed");
    pid_t pid = start_slow();
    const char *work = tu_path("%s/out.h5.work", dir);
    int status = 0, started;
    if (!strcmp(how, "kill_network")) {
        started = wait_for(pid, work, 3);
        kill_one_rank();
    } else if (!strcmp(how, "kill_dynamics")) {
        started = wait_for(pid, work, 0);
        kill_one_rank();
    } else { /* signal*: 3 network blocks of plane 0 done; a volume: its network phase done */
        started = wait_for(pid, work, strcmp(how, "signal_volume") ? 3 : 0);
        kill(pid, SIGUSR1);
    }
    TU_CHECK(started == 0, "the run ended before it could be interrupted (see run1.txt)");
    if (started) return;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("interrupted run (%s): exit %d, %d network blocks on disk\n", how, code,
           tu_blocks_on_disk(work));
    TU_CHECK(code != 0, "the interrupted run did not fail");
    if (!strncmp(how, "signal", 6)) {
        TU_CHECK(code == 3, "SIGUSR1 must checkpoint and exit with status 3, got %d", code);
        TU_CHECK(tu_run("grep -q 'resume' %s/run1.txt", dir) == 0, "no resume hint printed");
    }
    TU_CHECK(access(tu_path("%s/out.h5", dir), F_OK) != 0, "a partial output under the final name");
    st = tu_run(MPIRUN " -n 2 %s %s --resume > %s/run2.txt 2>&1", exe, slow, dir);
    tu_run("cat %s/run2.txt | grep -E 'network|resum'", dir);
    TU_CHECK(st == 0, "--resume failed (%d)", st);
    TU_CHECK(tu_run("grep -Eq '[1-9][0-9]* reused' %s/run2.txt", dir) == 0,
             "--resume reused no network block");
    if (!strcmp(how, "kill_dynamics") || !strcmp(how, "signal_volume"))
        TU_CHECK(tu_run("grep -q ' 0 blocks done' %s/run2.txt", dir) == 0,
                 "after the network phase every block must be reused");
    TU_CHECK(same_labels(tu_path("%s/ref.h5", dir), tu_path("%s/out.h5", dir)),
             "resumed labels differ");
    TU_CHECK(access(work, F_OK) != 0, "the work directory was not removed after success");
}

static void bad_block(void)
{
    const char *img = tu_path("%s/bad.tif", dir);
    write_crop(img, 0, 1024);
    /* break the zlib header of the strip of page 1 (channel 2) holding row 600: only the ranks
     * that read those rows can fail */
    TIFF *t = TIFFOpen(img, "r");
    uint64_t *off = NULL;
    TIFFSetDirectory(t, 1);
    TIFFGetField(t, TIFFTAG_STRIPOFFSETS, &off);
    uint64_t at = off[TIFFComputeStrip(t, 600, 0)];
    TIFFClose(t);
    FILE *f = fopen(img, "r+b");
    fseek(f, (long)at, SEEK_SET);
    fwrite("\0\0\0\0", 1, 4, f);
    fclose(f);
    int st = tu_run(MPIRUN " -n 3 %s --quiet --pretrained_model %s"
                    " --image_path %s --chan 1 --chan2 2 --block 256 --output %s/o.h5 2> %s/err.txt",
                    exe, tu_need(tu_path("%s/models/tiny_random_nbase8_seed7.pth", tu_shared())),
                    img, dir, dir);
    tu_run("cat %s/err.txt", dir);
    TU_CHECK(st == 1, "a corrupt block must fail with exit 1, got %d", st);
    TU_CHECK(tu_run("grep -Eq 'error: rank [0-9]+: .*bad.tif: page 1: rows' %s/err.txt", dir) == 0,
             "the message does not name the rank, file and rows");
    TU_CHECK(tu_run("test $(grep -c error %s/err.txt) -eq 1", dir) == 0, "not exactly one error line");
    TU_CHECK(access(tu_path("%s/o.h5", dir), F_OK) != 0 &&
             tu_run("ls %s/o.h5.partial* %s/o.h5.lock > /dev/null 2>&1", dir, dir) != 0,
             "output, partial or lock left behind");
}

static void h5py(void)
{
    int st = tu_run(MPIRUN " -n 3 %s --quiet --pretrained_model %s --image_path %s --chan 1 --chan2 2"
                    " --block 128 --save_flows --output %s/o.h5", exe,
                    tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared())),
                    tu_need(tu_path("%s/reference/random_cp3_seed0_synth512/input.tif", tu_shared())),
                    dir);
    TU_CHECK(st == 0, "distributed run failed (%d)", st);
    FILE *f = fopen(tu_path("%s/check.py", dir), "w");
    fputs("import sys, h5py, numpy as np\n"
          "f = h5py.File(sys.argv[1], 'r')\n"
          "l = f['labels']\n"
          "assert l.dtype == np.uint32 and l.shape == (512, 512), (l.dtype, l.shape)\n"
          "assert l.chunks is not None and l.compression == 'gzip', (l.chunks, l.compression)\n"
          "assert f['flows'].shape == (2, 512, 512) and f['cellprob'].shape == (512, 512)\n"
          "c = f['cells'][...]\n"
          "n = int(l[...].max())\n"
          "assert len(c) == n == f.attrs['n_masks'], (len(c), n)\n"
          "assert list(c['id']) == list(range(1, n + 1))\n"
          "assert (c['area'] == np.bincount(l[...].ravel())[1:]).all()\n"
          "assert f.attrs['niter_used'] == 200 and f.attrs['block'] == 128\n"
          "assert len(f.attrs['model_sha256']) == 64\n"
          "print('h5py: ok,', n, 'masks, chunks', l.chunks)\n", f);
    fclose(f);
    st = tu_run("/usr/bin/python3 -c 'import h5py' 2>/dev/null");
    if (st != 0) {
        printf("SKIP: python3-h5py is not installed (scripts/install-deps.sh installs it)\n");
        return;
    }
    st = tu_run("/usr/bin/python3 %s/check.py %s/o.h5", dir, dir);
    TU_CHECK(st == 0, "h5py checks of the output failed");
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(exe, sizeof exe, "%s/cellpose-mpi", tu_build_dir());
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "stack")) stack();
    else if (!strcmp(what, "stack8")) stack8();
    else if (!strcmp(what, "dataset")) dataset();
    else if (!strcmp(what, "bad_block")) bad_block();
    else if (!strcmp(what, "h5py")) h5py();
    else if (!strcmp(what, "kill_network") || !strcmp(what, "kill_dynamics") ||
             !strcmp(what, "signal"))
        slow_plane(), interrupted(what);
    else if (!strcmp(what, "signal_stack"))
        slow_stack(), interrupted(what);
    else if (!strcmp(what, "signal_volume"))
        slow_volume(), interrupted(what);
    else return fprintf(stderr, "usage: test_dist_ops stack|stack8|dataset|kill_network|kill_dynamics|"
                                "signal|signal_stack|signal_volume|bad_block|h5py\n"), 2;
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
