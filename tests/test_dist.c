/* Distributed runs through the real CLI under mpirun (issue 3): labels on 1-4 ranks with small
 * blocks (many seams) must be bit-identical to the single-process engine on the whole image, and
 * equal to the oracle where it has final masks.
 * usage: test_dist seams CASE        a reference case, image mode (case.json parameters)
 *        test_dist seams_flows CASE  the same with --save_flows: /flows and /cellprob too
 *        test_dist seams_protrusions CASE   with --protrusions (no oracle for the masks)
 *        test_dist tiny_4mpx         tiny model on a generated 2048x2048 image
 *        test_dist thin_cells        generated long thin branching cells -> ideal flows, niter 2000,
 *                                    also with --protrusions
 *        test_dist tiles_once        the trained model on synth_1024, blocks of 256: the run
 *                                    summary's tile evaluations equal the plane's tiles on 1-4
 *                                    ranks (each tile evaluated once, DESIGN.md §2.2)
 * Each run prints the number of differing pixels per rank count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_err.h"
#include "flows.h"
#include "testutil.h"
#include "tiff_io.h"

#define MPIRUN "mpirun --oversubscribe"

static char dir[1024];

/* Runs the CLI (np = 0: plain single-process, no mpirun) with args, output out; with log, not
 * quiet, its messages into that file. */
static int cli(int np, const char *args, const char *out, const char *log)
{
    char tail[1200] = " --quiet";
    if (log) snprintf(tail, sizeof tail, " > %s 2>&1", log);
    if (np == 0)
        return tu_run("OMP_NUM_THREADS=2 %s/cellpose-mpi %s --output %s%s", tu_build_dir(), args,
                      out, tail);
    return tu_run(MPIRUN " -n %d -x OMP_NUM_THREADS=1 %s/cellpose-mpi %s --output %s%s", np,
                  tu_build_dir(), args, out, tail);
}

/* The run summary's "<n> tile evaluations for <m> tiles" in log: 0 if they agree. */
static int tiles_once(const char *log, int np)
{
    long long n = -1, m = -2;
    FILE *f = fopen(log, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, "reused from the checkpoint; ");
        if (at)
            sscanf(at, "reused from the checkpoint; %lld tile evaluations for %lld tiles", &n, &m);
    }
    if (f) fclose(f);
    printf("%d rank(s): %lld tile evaluations for %lld tiles\n", np, n, m);
    return n == m ? 0 : -1;
}

/* With --save_flows: /flows and /cellprob of out bit-identical to those of ref. */
static void compare_flows(const char *ref, const char *out, int np)
{
    const char *sets[] = {"flows", "cellprob"};
    for (int k = 0; k < 2; k++) {
        int64_t n = 0, m = 0, diff = 0;
        float *a = tu_h5_read_f32(ref, sets[k], &n), *b = tu_h5_read_f32(out, sets[k], &m);
        TU_CHECK(a && b && n == m && n > 0, "%d ranks: /%s missing or of another size", np,
                 sets[k]);
        for (int64_t i = 0; a && b && n == m && i < n; i++) diff += memcmp(a + i, b + i, 4) != 0;
        printf("%d rank(s): /%s: %lld of %lld values differ\n", np, sets[k], (long long)diff,
               (long long)n);
        TU_CHECK(diff == 0, "%d ranks: /%s not bit-identical to the single process", np, sets[k]);
        free(a);
        free(b);
    }
}

/* Single-process reference, then 1..4 ranks with blocks of side B: bit-identical labels. If
 * oracle is not NULL the reference must equal it too; with check_tiles, each rank count's run
 * summary says each tile was evaluated once. */
static void compare_ranks(const char *args, int B, const char *oracle, int check_tiles)
{
    char ref[1100], out[1100], log[1100], dargs[8192];
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    int st = cli(0, args, ref, NULL);
    TU_CHECK(st == 0, "single-process run failed (%d): %s", st, args);
    int64_t n = 0, m = 0;
    uint32_t *want = st == 0 ? tu_h5_read_u32(ref, "labels", &n) : NULL;
    if (!want) return;
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++) mx = want[i] > mx ? want[i] : mx;
    printf("single process: %u masks\n", mx);
    if (oracle) {
        tu_tiff o = tu_read_tiff(oracle);
        TU_CHECK(o.n == n && tu_same_up_to_renumbering(want, o.u32, n),
                 "single-process masks differ from the oracle %s", oracle);
        tu_tiff_free(&o);
    }
    for (int np = 1; np <= 4; np++) {
        snprintf(out, sizeof out, "%s/np%d.h5", dir, np);
        snprintf(dargs, sizeof dargs, "%s --block %d", args, B);
        snprintf(log, sizeof log, "%s/np%d.txt", dir, np);
        st = cli(np, dargs, out, check_tiles ? log : NULL);
        TU_CHECK(st == 0, "%d ranks: exit %d", np, st);
        if (check_tiles)
            TU_CHECK(tiles_once(log, np) == 0, "%d ranks: tiles evaluated more than once, or no "
                     "summary in %s", np, log);
        uint32_t *got = st == 0 ? tu_h5_read_u32(out, "labels", &m) : NULL;
        int64_t diff = got && m == n ? tu_count_diff_u32(got, want, n) : -1;
        printf("%d rank(s), blocks of %d: %lld pixels differ\n", np, B, (long long)diff);
        TU_CHECK(diff == 0, "%d ranks: labels differ from the single process (%lld)", np,
                 (long long)diff);
        free(got);
        if (strstr(args, "--save_flows")) compare_flows(ref, out, np);
    }
    free(want);
}

/* "shared/x/y" of case.json -> <tu_shared()>/x/y (skips the test if the file is not there) */
static const char *shared_path(const char *p)
{
    return tu_need(tu_path("%s/%s", tu_shared(), strncmp(p, "shared/", 7) ? p : p + 7));
}

/* extra: more flags, or ""; oracle: whether the single process must give the oracle's masks
 * (not with --protrusions, which changes them) */
static void seams_case(const char *c, const char *extra, int oracle)
{
    json_object *j = tu_case_json(c), *k = tu_json_get(j, "call.eval_kwargs"), *o;
    char args[8192];
    json_object *in = tu_json_get(j, "input.path");
    int len = snprintf(args, sizeof args, "--pretrained_model %s --image_path %s",
                       shared_path(json_object_get_string(tu_json_get(j, "model.path"))),
                       in ? shared_path(json_object_get_string(in))
                          : tu_need(tu_path("%s/reference/%s/input.tif", tu_shared(), c)));
    if ((o = tu_json_get(k, "channels")))
        len += snprintf(args + len, sizeof args - (size_t)len, " --chan %d --chan2 %d",
                        json_object_get_int(json_object_array_get_idx(o, 0)),
                        json_object_get_int(json_object_array_get_idx(o, 1)));
    if ((o = tu_json_get(k, "diameter")) && !json_object_is_type(o, json_type_null))
        len += snprintf(args + len, sizeof args - (size_t)len, " --diameter %g", json_object_get_double(o));
    if ((o = tu_json_get(k, "invert")) && json_object_get_boolean(o))
        len += snprintf(args + len, sizeof args - (size_t)len, " --invert");
    if ((o = tu_json_get(k, "augment")) && json_object_get_boolean(o))
        len += snprintf(args + len, sizeof args - (size_t)len, " --augment");
    if ((o = tu_json_get(k, "niter")) && !json_object_is_type(o, json_type_null))
        len += snprintf(args + len, sizeof args - (size_t)len, " --niter %d", json_object_get_int(o));
    const char *real[] = {"flow_threshold", "cellprob_threshold"};
    for (int i = 0; i < 2; i++)
        if ((o = tu_json_get(k, real[i])))
            len += snprintf(args + len, sizeof args - (size_t)len, " --%s %.17g", real[i],
                            json_object_get_double(o));
    if ((o = tu_json_get(k, "min_size")))
        len += snprintf(args + len, sizeof args - (size_t)len, " --min_size %d",
                        json_object_get_int(o));
    if ((o = tu_json_get(k, "resample")) && !json_object_get_boolean(o))
        len += snprintf(args + len, sizeof args - (size_t)len, " --no_resample");
    len += snprintf(args + len, sizeof args - (size_t)len, " %s", extra);
    /* where Cellpose's min_size defect changes the result, the oracle's corrected masks (ISSUE_NOTES) */
    const char *corrected = tu_path("%s/reference/%s/masks_corrected.tif", tu_shared(), c);
    compare_ranks(args, 128, !oracle                         ? NULL
                             : access(corrected, R_OK) == 0 ? corrected
                             : tu_need(tu_path("%s/reference/%s/masks.tif", tu_shared(), c)),
                  1);
    json_object_put(j);
}

/* synth_1024 mirrored into a 2048x2048 two-channel float image: a few megapixels. */
static void tiny_4mpx(void)
{
    tu_tiff s = tu_read_tiff(tu_path("%s/data/synthetic/synth_1024.tif", tu_shared()));
    int64_t N = 2048, n = s.ny;
    float *v = malloc(sizeof *v * (size_t)(2 * N * N));
    for (int c = 0; c < 2; c++)
        for (int64_t y = 0; y < N; y++)
            for (int64_t x = 0; x < N; x++) {
                int64_t sy = y < n ? y : 2 * n - 1 - y, sx = x < n ? x : 2 * n - 1 - x;
                v[(c * N + y) * N + x] = s.f32[(c * n + sy) * n + sx];
            }
    char err[CP_ERR_LEN], img[1100], args[4096];
    snprintf(img, sizeof img, "%s/big.tif", dir);
    if (cp_tiff_write_f32(img, v, 2, N, N, err)) fprintf(stderr, "%s\n", err), exit(2);
    free(v);
    tu_tiff_free(&s);
    snprintf(args, sizeof args, "--pretrained_model %s --image_path %s --chan 1 --chan2 2",
             tu_need(tu_path("%s/models/tiny_random_nbase8_seed7.pth", tu_shared())), img);
    compare_ranks(args, 256, NULL, 0);
}

/* A tree of 1-3 px wide processes, several blocks long, around a body; three cells that touch. */
static void draw_line(uint32_t *lab, int64_t L, double y0, double x0, double y1, double x1,
                      int w, uint32_t v)
{
    int64_t steps = (int64_t)(4 * (fabs(y1 - y0) + fabs(x1 - x0))) + 1;
    for (int64_t s = 0; s <= steps; s++) {
        double t = (double)s / (double)steps;
        int64_t y = (int64_t)(y0 + t * (y1 - y0)), x = (int64_t)(x0 + t * (x1 - x0));
        for (int dy = 0; dy < w; dy++)
            for (int dx = 0; dx < w; dx++)
                if (y + dy < L && x + dx < L && y + dy >= 0 && x + dx >= 0)
                    lab[(y + dy) * L + x + dx] = v;
    }
}

static void branch(uint32_t *lab, int64_t L, double y, double x, double ang, double len, int w,
                   int depth, uint32_t v)
{
    double y1 = y + len * sin(ang), x1 = x + len * cos(ang);
    draw_line(lab, L, y, x, y1, x1, w, v);
    if (depth > 0) {
        branch(lab, L, y1, x1, ang + 0.5, len * 0.7, w > 1 ? w - 1 : 1, depth - 1, v);
        branch(lab, L, y1, x1, ang - 0.6, len * 0.8, w, depth - 1, v);
    }
}

static void thin_cells(void)
{
    const int64_t L = 640;
    uint32_t *lab = calloc((size_t)(L * L), sizeof *lab);
    double body[3][2] = {{160, 170}, {420, 300}, {250, 500}};
    for (uint32_t c = 0; c < 3; c++) {
        for (int64_t y = -14; y <= 14; y++)
            for (int64_t x = -14; x <= 14; x++)
                if (y * y + x * x <= 196) lab[((int64_t)body[c][0] + y) * L + (int64_t)body[c][1] + x] = c + 1;
        for (int k = 0; k < 3; k++)
            branch(lab, L, body[c][0], body[c][1], 2.1 * k + c, 120, 3, 3, c + 1);
    }
    double *mu = malloc(sizeof *mu * (size_t)(2 * L * L));
    char err[CP_ERR_LEN];
    if (cp_masks_to_flows(lab, L, L, mu, err)) fprintf(stderr, "%s\n", err), exit(2);
    float *dP = malloc(sizeof *dP * (size_t)(2 * L * L)), *cp = malloc(sizeof *cp * (size_t)(L * L));
    for (int64_t i = 0; i < 2 * L * L; i++) dP[i] = (float)(5.0 * mu[i]);
    for (int64_t i = 0; i < L * L; i++) cp[i] = lab[i] ? 6.0f : -6.0f;
    char dpath[1100], cpath[1100], args[4096];
    snprintf(dpath, sizeof dpath, "%s/dP.tif", dir);
    snprintf(cpath, sizeof cpath, "%s/cellprob.tif", dir);
    if (cp_tiff_write_f32(dpath, dP, 2, L, L, err) || cp_tiff_write_f32(cpath, cp, 1, L, L, err))
        fprintf(stderr, "%s\n", err), exit(2);
    snprintf(args, sizeof args, "--flows %s --cellprob_in %s --niter 2000", dpath, cpath);
    compare_ranks(args, 64, NULL, 0);
    /* --protrusions: the opening releases the 3-px branches and the paths take them back, each
     * block computed on a window grown by cp_protrusions_halo(60) = 124 pixels */
    snprintf(args, sizeof args, "--flows %s --cellprob_in %s --niter 2000 --protrusions "
             "--protrusion_max_len 60", dpath, cpath);
    compare_ranks(args, 64, NULL, 0);
    free(lab), free(mu), free(dP), free(cp);
}

static void tiles_once_case(void)
{
    char args[4096];
    snprintf(args, sizeof args, "--pretrained_model %s --image_path %s --chan 1 --chan2 2 "
             "--diameter 30", tu_need(tu_path("%s/models/synth_trained_nbase16.pth", tu_shared())),
             tu_need(tu_path("%s/data/synthetic/synth_1024.tif", tu_shared())));
    compare_ranks(args, 256, NULL, 1);
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    if (argc > 2 && !strcmp(argv[1], "seams")) seams_case(argv[2], "", 1);
    else if (argc > 2 && !strcmp(argv[1], "seams_flows")) seams_case(argv[2], "--save_flows", 1);
    else if (argc > 2 && !strcmp(argv[1], "seams_protrusions"))
        seams_case(argv[2], "--protrusions", 0);
    else if (argc > 1 && !strcmp(argv[1], "tiny_4mpx")) tiny_4mpx();
    else if (argc > 1 && !strcmp(argv[1], "thin_cells")) thin_cells();
    else if (argc > 1 && !strcmp(argv[1], "tiles_once")) tiles_once_case();
    else return fprintf(stderr, "usage: test_dist seams|seams_flows|seams_protrusions CASE | "
                        "tiny_4mpx | thin_cells | tiles_once\n"), 2;
    tu_run("rm -rf %s", dir);
    return tu_finish();
}
