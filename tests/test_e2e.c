/* End-to-end parity through the real CLI: runs build/cellpose-mpi on a reference case with the
 * parameters of its case.json and compares the output file with the oracle:
 *   image mode:  dP and cellprob within 1e-3 absolute (worst error printed), final masks identical
 *                up to renumbering; 3-D cases (do_3D in case.json) run with --do_3D, their masks
 *                identical label for label, flow_threshold recorded as unused, /cells with z;
 *   flows mode:  --flows dP.tif --cellprob_in cellprob.tif (the oracle's own network output;
 *                3-D cases with --do_3D): masks identical label for label.
 * Both: /labels chunked as h5store.h says (3-D tiles for a volume); a 3-D image run's saved flows
 * fed back through --flows --do_3D give its labels again (not without resample).
 * usage: test_e2e CASE image|flows [VARIANT] [blocks]
 *   VARIANT: stitch025, noresample, smooth1 (the case's <variant>_run / smooth_run with its
 *   <file>_<variant>.tif outputs), niter200, recipe; blocks (3-D cases, from the image or from
 *   the oracle's flows, alone or after noresample: the main run, then --do_3D over blocks of 32
 *   voxels on 1-4 ranks, bit-identical to it) */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char cmd[16384];

static void arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void arg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t len = strlen(cmd);
    cmd[len] = ' ';
    vsnprintf(cmd + len + 1, sizeof cmd - len - 1, fmt, ap);
    va_end(ap);
}

/* "shared/x/y" in case.json -> <tu_shared()>/x/y (skips the test if the file is not there) */
static const char *shared_path(const char *p)
{
    return tu_need(tu_path("%s/%s", tu_shared(), strncmp(p, "shared/", 7) ? p : p + 7));
}

/* The oracle file `name` of case `c` (following a "path" redirect of case.json). */
static const char *ref_file(json_object *j, const char *c, const char *name)
{
    char key[256];
    snprintf(key, sizeof key, "files.%s.path", name);
    json_object *p = tu_json_get(j, key);
    if (p) return shared_path(json_object_get_string(p));
    return tu_need(tu_path("%s/reference/%s/%s", tu_shared(), c, name));
}

static int is_true(json_object *o) { return o && json_object_get_boolean(o); }
static int is_set(json_object *o) { return o && !json_object_is_type(o, json_type_null); }

/* Dynamics flags shared by both modes, from an eval_kwargs-like object. */
static void dynamics_flags(json_object *k)
{
    json_object *o;
    if ((o = tu_json_get(k, "flow_threshold"))) arg("--flow_threshold %.17g", json_object_get_double(o));
    if ((o = tu_json_get(k, "cellprob_threshold")))
        arg("--cellprob_threshold %.17g", json_object_get_double(o));
    if ((o = tu_json_get(k, "min_size"))) arg("--min_size %d", json_object_get_int(o));
    if ((o = tu_json_get(k, "max_size_fraction")))
        arg("--max_size_fraction %.17g", json_object_get_double(o));
    if ((o = tu_json_get(k, "interp")) && !json_object_get_boolean(o)) arg("--no_interp");
    if ((o = tu_json_get(k, "stitch_threshold")) && json_object_get_double(o) > 0)
        arg("--stitch_threshold %.17g", json_object_get_double(o));
}

static void image_flags(json_object *k)
{
    json_object *o;
    if ((o = tu_json_get(k, "channels")) && is_set(o))
        arg("--chan %d --chan2 %d", json_object_get_int(json_object_array_get_idx(o, 0)),
            json_object_get_int(json_object_array_get_idx(o, 1)));
    o = tu_json_get(k, "diameter");
    arg("--diameter %.17g", is_set(o) ? json_object_get_double(o) : 0.0);
    if ((o = tu_json_get(k, "bsize"))) arg("--bsize %d", json_object_get_int(o));
    if ((o = tu_json_get(k, "tile_overlap"))) arg("--tile_overlap %.17g", json_object_get_double(o));
    if (is_set(o = tu_json_get(k, "niter"))) arg("--niter %d", json_object_get_int(o));
    if (is_set(o = tu_json_get(k, "z_axis"))) arg("--z_axis %d", json_object_get_int(o));
    if (is_set(o = tu_json_get(k, "channel_axis"))) arg("--channel_axis %d", json_object_get_int(o));
    if ((o = tu_json_get(k, "resample")) && !json_object_get_boolean(o)) arg("--no_resample");
    if (is_true(tu_json_get(k, "augment"))) arg("--augment");
    if (is_true(tu_json_get(k, "invert"))) arg("--invert");
    if ((o = tu_json_get(k, "normalize")) && json_object_is_type(o, json_type_boolean) &&
        !json_object_get_boolean(o))
        arg("--no_norm");
    if (is_true(tu_json_get(k, "do_3D"))) {
        arg("--do_3D");
        if (is_set(o = tu_json_get(k, "anisotropy"))) arg("--anisotropy %.17g", json_object_get_double(o));
        if ((o = tu_json_get(k, "flow3D_smooth"))) arg("--flow3D_smooth %.17g", json_object_get_double(o));
    }
    dynamics_flags(k);
}

/* Our /flows is (2,Y,X) or (Z,2,Y,X), or (3,Z,Y,X) in 3-D; the oracle's dP is CYX or CZYX. */
static void check_flows(const char *out, const char *dp_path, const char *cp_path)
{
    int64_t n, m;
    float *fl = tu_h5_read_f32(out, "flows", &n), *cp = tu_h5_read_f32(out, "cellprob", &m);
    tu_tiff dp = tu_read_tiff(dp_path), cr = tu_read_tiff(cp_path);
    TU_CHECK(fl && cp && n == dp.n && m == cr.n, "flow sizes: ours %lld/%lld, oracle %lld/%lld",
             (long long)n, (long long)m, (long long)dp.n, (long long)cr.n);
    if (fl && cp && n == dp.n && m == cr.n) {
        int64_t nz = cr.pages, npix = cr.ny * cr.nx, nc = n / m;
        float *czyx = malloc(sizeof(float) * (size_t)n);
        for (int64_t z = 0; z < nz; z++)
            for (int64_t c = 0; c < nc; c++) /* (3,Z,Y,X) is the oracle's layout already */
                memcpy(czyx + (c * nz + z) * npix, fl + (nc == 3 ? c * nz + z : z * 2 + c) * npix,
                       sizeof(float) * (size_t)npix);
        double edp = tu_maxabs(czyx, dp.f32, n, NULL), ecp = tu_maxabs(cp, cr.f32, m, NULL);
        printf("max |dP - oracle| = %.3g, max |cellprob - oracle| = %.3g\n", edp, ecp);
        TU_CHECK(edp <= 1e-3, "dP error %.3g > 1e-3", edp);
        TU_CHECK(ecp <= 1e-3, "cellprob error %.3g > 1e-3", ecp);
        free(czyx);
    }
    free(fl);
    free(cp);
    tu_tiff_free(&dp);
    tu_tiff_free(&cr);
}

static void check_masks(const char *out, const char *expect, int exact)
{
    int64_t n;
    uint32_t *lab = tu_h5_read_u32(out, "labels", &n);
    tu_tiff ref = tu_read_tiff(expect);
    TU_CHECK(lab && n == ref.n, "label count: ours %lld, oracle %lld", (long long)n, (long long)ref.n);
    if (lab && n == ref.n) {
        int64_t diff = tu_count_diff_u32(lab, ref.u32, n);
        uint32_t mo = 0, mr = 0;
        for (int64_t i = 0; i < n; i++) {
            mo = lab[i] > mo ? lab[i] : mo;
            mr = ref.u32[i] > mr ? ref.u32[i] : mr;
        }
        printf("masks: ours %u, oracle %u, %lld pixels with a different label value\n", mo, mr,
               (long long)diff);
        if (exact) TU_CHECK(diff == 0, "masks differ label for label in %lld pixels", (long long)diff);
        TU_CHECK(tu_same_up_to_renumbering(lab, ref.u32, n), "masks differ beyond renumbering");
    }
    free(lab);
    tu_tiff_free(&ref);
}

/* /cells of a 3-D output against its /labels (Z, Y, X): one row per label with its voxel count,
 * centroid and box, z included. */
static void check_cells3(const char *out)
{
    int64_t n;
    uint32_t *lab = tu_h5_read_u32(out, "labels", &n);
    typedef struct row {
        uint32_t id;
        uint64_t area;
        double cz, cy, cx;
        int64_t z0, y0, x0, z1, y1, x1;
    } row;
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "cells", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), ls = H5Dopen2(f, "labels", H5P_DEFAULT), lsp = H5Dget_space(ls);
    hsize_t nrows = 0, dims[3] = {0, 0, 0};
    H5Sget_simple_extent_dims(sp, &nrows, NULL);
    H5Sget_simple_extent_dims(lsp, dims, NULL);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(row));
    H5Tinsert(t, "id", HOFFSET(row, id), H5T_NATIVE_UINT32);
    H5Tinsert(t, "area", HOFFSET(row, area), H5T_NATIVE_UINT64);
    const char *names[] = {"centroid_z", "centroid_y", "centroid_x"};
    const char *box[] = {"bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"};
    for (int k = 0; k < 3; k++) H5Tinsert(t, names[k], HOFFSET(row, cz) + 8 * (size_t)k, H5T_NATIVE_DOUBLE);
    for (int k = 0; k < 6; k++) H5Tinsert(t, box[k], HOFFSET(row, z0) + 8 * (size_t)k, H5T_NATIVE_INT64);
    row *r = calloc(nrows + 1, sizeof *r);
    herr_t st = H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, r);
    H5Tclose(t), H5Sclose(sp), H5Sclose(lsp), H5Dclose(ls), H5Dclose(d), H5Fclose(f);
    uint32_t max = 0;
    for (int64_t i = 0; lab && i < n; i++) max = lab[i] > max ? lab[i] : max;
    TU_CHECK(st >= 0 && lab && nrows == max, "/cells: %llu rows for %u labels",
             (unsigned long long)nrows, max);
    row *w = calloc((size_t)max + 1, sizeof *w);
    for (uint32_t v = 1; v <= max; v++) w[v].z0 = w[v].y0 = w[v].x0 = INT64_MAX;
    for (int64_t i = 0; st >= 0 && lab && i < n; i++) {
        row *q = &w[lab[i]];
        int64_t c[3] = {i / (int64_t)(dims[1] * dims[2]), i / (int64_t)dims[2] % (int64_t)dims[1],
                        i % (int64_t)dims[2]};
        q->area++;
        for (int k = 0; k < 3; k++) {
            (&q->cz)[k] += (double)c[k];
            if (c[k] < (&q->z0)[k]) (&q->z0)[k] = c[k];
            if (c[k] + 1 > (&q->z1)[k]) (&q->z1)[k] = c[k] + 1;
        }
    }
    int64_t bad = 0;
    for (hsize_t j = 0; st >= 0 && nrows == max && j < nrows; j++) {
        const row *a = &r[j], *e = &w[j + 1];
        int ok = a->id == j + 1 && a->area == e->area;
        for (int k = 0; k < 3; k++) ok &= fabs((&a->cz)[k] - (&e->cz)[k] / (double)e->area) < 1e-9;
        for (int k = 0; k < 6; k++) ok &= (&a->z0)[k] == (&e->z0)[k];
        bad += !ok;
    }
    printf("/cells: %llu rows, %lld differ from the labels\n", (unsigned long long)nrows,
           (long long)bad);
    TU_CHECK(bad == 0, "/cells: %lld rows differ from the labels", (long long)bad);
    free(r), free(w), free(lab);
}

/* /labels chunked as h5store.h says: a volume in 3-D tiles of up to 32x128x128, planes (and
 * stacks) a plane, or its 1024x1024 tiles, at a time. */
static void check_chunks(const char *out, int volume)
{
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "labels", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), pl = H5Dget_create_plist(d);
    hsize_t dims[3] = {0, 0, 0}, chunk[3] = {0, 0, 0};
    const hsize_t tile[3] = {32, 128, 128};
    int rank = H5Sget_simple_extent_dims(sp, dims, NULL);
    int ok = H5Pget_layout(pl) == H5D_CHUNKED && H5Pget_chunk(pl, 3, chunk) == rank;
    for (int i = 0; i < rank; i++) {
        hsize_t t = volume ? tile[i] : i < rank - 2 ? 1 : 1024;
        ok &= chunk[i] == (dims[i] < t ? dims[i] : t);
    }
    H5Pclose(pl), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
    printf("/labels of %llux%llux%llu (rank %d) in chunks of %llux%llux%llu\n",
           (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
           rank, (unsigned long long)chunk[0], (unsigned long long)chunk[1],
           (unsigned long long)chunk[2]);
    TU_CHECK(ok, "/labels: not chunked as %s", volume ? "3-D tiles" : "planes");
}

/* A 3-D output's saved flows fed back (--flows --do_3D): the same labels, label for label; with
 * blocks also over blocks of 32 on 2 ranks (the saved flows read by windows). */
static void check_roundtrip(const char *out, json_object *j, json_object *k, int blocks)
{
    for (int over = 0; over <= blocks; over++) {
        char back[4096];
        snprintf(back, sizeof back, "%s/roundtrip%d.h5", tu_tmpdir(), over);
        snprintf(cmd, sizeof cmd, "%s%s/cellpose-mpi --quiet --flows %s --do_3D --niter %d "
                 "--output %s%s", over ? "mpirun --oversubscribe -n 2 -x OMP_NUM_THREADS=1 " : "",
                 tu_build_dir(), out,
                 json_object_get_int(tu_json_get(j, "niter.used_by_follow_flows")), back,
                 over ? " --block 32" : "");
        dynamics_flags(k);
        printf("%s\n", cmd);
        TU_CHECK(tu_run("%s", cmd) == 0, "the round trip through --flows --do_3D failed");
        int64_t n, m;
        uint32_t *a = tu_h5_read_u32(out, "labels", &n), *b = tu_h5_read_u32(back, "labels", &m);
        int64_t diff = a && b && n == m ? tu_count_diff_u32(a, b, n) : -1;
        printf("round trip%s: %lld voxels with a different label\n",
               over ? " over blocks of 32 on 2 ranks" : "", (long long)diff);
        TU_CHECK(diff == 0, "round trip: labels differ (%lld)", (long long)diff);
        free(a), free(b);
    }
}

/* --do_3D on 4 ranks without --block: the default block (mpi/plan.c), recorded as block_used, is
 * the budget's 128 halved (not below 32) until the 4 ranks have a block each; the labels are
 * those of the whole-volume run `out` of command line `whole`. */
static void check_default_block3(const char *whole, const char *out)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/default_np4.h5", tu_tmpdir());
    int st = tu_run("mpirun --oversubscribe -n 4 -x OMP_NUM_THREADS=1 %s --output %s", whole, d);
    TU_CHECK(st == 0, "--do_3D on 4 ranks with the default block exited with %d", st);
    st = tu_run("/usr/bin/python3 -c \"import h5py, sys\n"
                "f = h5py.File(sys.argv[1], 'r'); B = int(f.attrs['block_used'])\n"
                "Z, Y, X = f['labels'].shape\n"
                "n = lambda b: -(-Z // b) * -(-Y // b) * -(-X // b)\n"
                "print('4 ranks, default block: %%d (%%d blocks of %%dx%%dx%%d)' %% (B, n(B), Z, Y, X))\n"
                "assert B in (32, 64, 128) and (n(B) >= 4 or B == 32) and (B == 128 or n(2 * B) < 4)"
                "\" %s", d);
    TU_CHECK(st == 0, "4 ranks: the default block breaks the rule of mpi/plan.c");
    if (st == 0) {
        int same = tu_run("h5diff -q %s %s /labels", out, d) == 0;
        TU_CHECK(same, "4 ranks with the default block: /labels differs from the whole volume");
    }
}

/* --do_3D over cubic blocks of 32 voxels on 1-4 ranks (mpi/dvolume.c): /labels, /cells, /flows
 * and /cellprob bit-identical to the whole-volume run `out` of command line `whole`. */
static void check_blocks3(const char *whole, const char *out)
{
    for (int np = 1; np <= 4; np++) {
        const char *o = tu_path("%s/blocks_np%d.h5", tu_tmpdir(), np);
        int st = tu_run("mpirun --oversubscribe -n %d -x OMP_NUM_THREADS=1 %s --block 32 "
                        "--output %s", np, whole, o);
        TU_CHECK(st == 0, "--do_3D on %d rank(s) with blocks of 32 exited with %d", np, st);
        for (int k = 0; st == 0 && k < 4; k++) {
            const char *set = (const char *[]){"/labels", "/cells", "/flows", "/cellprob"}[k];
            int same = tu_run("h5diff -q %s %s %s", out, o, set) == 0;
            printf("blocks of 32 on %d rank(s): %s %s\n", np, set, same ? "identical" : "DIFFER");
            TU_CHECK(same, "%d rank(s): %s differs from the whole-volume run", np, set);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_e2e CASE image|flows [stitch025|niter200|recipe]\n");
        return 2;
    }
    const char *c = argv[1], *mode = argv[2], *variant = argc > 3 ? argv[3] : "";
    /* the main run, then over 3-D blocks ("blocks" alone or after the variant) */
    const int blocks = !strcmp(argv[argc - 1], "blocks") && argc > 3;
    if (!strcmp(variant, "blocks")) variant = "";
    json_object *j = tu_case_json(c);
    char out[4096], masks[4096];
    snprintf(out, sizeof out, "%s/%s_%s%s.h5", tu_tmpdir(), c, mode, variant);
    char sfx[64] = "";
    if (*variant && strcmp(variant, "recipe")) snprintf(sfx, sizeof sfx, "_%s", variant);
    snprintf(cmd, sizeof cmd, "%s/cellpose-mpi --quiet --output %s", tu_build_dir(), out);

    json_object *k = tu_json_get(j, "call.eval_kwargs");
    if (!strcmp(variant, "stitch025") || !strcmp(variant, "noresample"))
        k = tu_json_get(j, tu_path("%s_run.call.eval_kwargs", variant));
    if (!strcmp(variant, "smooth1")) k = tu_json_get(j, "smooth_run.call.eval_kwargs");
    if (!k) k = tu_json_get(j, "call"); /* flows cases: the dynamics keys sit in call */
    const char *mname = tu_path("masks%s.tif", sfx);
    if (!strcmp(c, "synth_trained_nbase16_diam40_noresample"))
        mname = "masks_corrected.tif"; /* our min_size rule, DESIGN.md §2.8 */
    if (!strcmp(variant, "recipe")) mname = "masks_recipe.tif";
    snprintf(masks, sizeof masks, "%s", ref_file(j, c, mname));

    if (!strcmp(mode, "flows")) {
        const char *dp = tu_path("%s", ref_file(j, c, tu_path("dP%s.tif", *variant == 's' ? sfx : "")));
        const char *cp = tu_path("%s", ref_file(j, c, tu_path("cellprob%s.tif", *variant == 's' ? sfx : "")));
        arg("--flows %s --cellprob_in %s", dp, cp);
        json_object *o = tu_json_get(j, "niter.used_by_follow_flows");
        arg("--niter %d", !strcmp(variant, "niter200") ? 200 : json_object_get_int(o));
        if (is_true(tu_json_get(k, "do_3D"))) arg("--do_3D");
        if (blocks) arg("--save_flows"); /* compared over blocks too */
        dynamics_flags(k);
    } else {
        json_object *in = tu_json_get(j, "input.path");
        arg("--image_path %s", in ? shared_path(json_object_get_string(in))
                                  : tu_need(tu_path("%s/reference/%s/input.tif", tu_shared(), c)));
        json_object *mp = tu_json_get(j, "model.path");
        arg("--pretrained_model %s", shared_path(json_object_get_string(mp)));
        if (!strcmp(c, "synth_trained_nbase16_synth1024")) {
            arg("--chan 1 --chan2 2 --diameter 30");
            if (!strcmp(variant, "recipe")) arg("--bsize 512 --niter 2000 --no_resample");
        } else {
            image_flags(k);
            arg("--save_flows");
        }
    }
    printf("%s\n", cmd);
    char whole[sizeof cmd];
    snprintf(whole, sizeof whole, "%s", cmd);
    int st = tu_run("%s", cmd);
    TU_CHECK(st == 0, "cellpose-mpi exited with %d", st);
    if (st == 0) {
        if (!strcmp(mode, "image") && tu_json_get(j, tu_path("files.dP%s.tif", sfx)))
            check_flows(out, ref_file(j, c, tu_path("dP%s.tif", sfx)),
                        tu_path("%s", ref_file(j, c, tu_path("cellprob%s.tif", sfx))));
        int do3d = is_true(tu_json_get(k, "do_3D"));
        check_masks(out, masks, !strcmp(mode, "flows") || do3d);
        check_chunks(out, do3d);
        if (do3d) { /* flow_threshold recorded as unused; /cells with z */
            TU_CHECK(tu_run("h5dump -a unused_parameters %s | grep -q flow_threshold", out) == 0,
                     "no attribute unused_parameters naming flow_threshold");
            check_cells3(out);
        }
        /* without resample the saved flows are at the network scale, the labels are not */
        if (do3d && !strcmp(mode, "image") && strcmp(variant, "noresample"))
            check_roundtrip(out, j, k, blocks);
        if (blocks) check_blocks3(whole, out);
        if (blocks && !strcmp(mode, "image") && !*variant) check_default_block3(whole, out);
    }
    json_object_put(j);
    tu_run("rm -rf %s", tu_tmpdir());
    return tu_finish();
}
