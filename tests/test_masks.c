/* Tests of src/masks.c (CELLPOSE_ALGORITHM.md §4.4-4.6):
 *   test_masks case <name> [stitch025]  masks_raw from the oracle's own end points (p_final.tif),
 *       label for label, every plane (isolates this module from flow following);
 *   test_masks argsort  seed order against spec/seed_argsort_emulation.py (python3 + numpy);
 *   test_masks unit     seed rule, overlap order, big-mask threshold, renumbering, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "masks.h"
#include "refcase.h"
#include "testutil.h"

static int test_case(const char *name, const char *variant)
{
    refcase c = refcase_load(name, variant);
    const int64_t npix = c.Ly * c.Lx;
    tu_tiff pf = tu_read_tiff(c.p_final), mr = tu_read_tiff(c.masks_raw);
    cp_particle *p = malloc(sizeof *p * (size_t)npix);
    uint32_t *lab = malloc(sizeof *lab * (size_t)npix);
    for (int64_t z = 0; z < c.Z; z++) {
        int64_t n = 0;
        for (int64_t i = 0; i < npix; i++)
            if (c.cellprob.f32[z * npix + i] > c.threshold)
                p[n++] = (cp_particle){.src = i, .py = pf.f32[z * npix + i], .px = pf.f32[(c.Z + z) * npix + i]};
        int64_t nseeds = 0;
        char err[CP_ERR_LEN] = "";
        int rc = cp_masks_raw(p, n, c.Ly, c.Lx, c.max_size_fraction, lab, &nseeds, err);
        TU_CHECK(rc == 0, "plane %lld: %s", (long long)z, err);
        uint32_t nlab = 0;
        for (int64_t i = 0; i < npix; i++) nlab = lab[i] > nlab ? lab[i] : nlab;
        int64_t d = tu_count_diff_u32(lab, mr.u32 + z * npix, npix);
        printf("%s %s plane %lld: %lld particles, %lld seeds, %u labels, masks_raw differing pixels %lld\n",
               name, variant, (long long)z, (long long)n, (long long)nseeds, nlab, (long long)d);
        TU_CHECK(d == 0, "plane %lld: %lld pixels differ from masks_raw", (long long)z, (long long)d);
    }
    free(p);
    free(lab);
    tu_tiff_free(&pf);
    tu_tiff_free(&mr);
    refcase_free(&c);
    return tu_finish();
}

/* ---- argsort against the Python emulation ---- */

static const char *argsort_script =
    "import importlib.util, sys\n"
    "import numpy as np\n"
    "spec = importlib.util.spec_from_file_location('emu', sys.argv[1])\n"
    "emu = importlib.util.module_from_spec(spec); spec.loader.exec_module(emu)\n"
    "rs = np.random.RandomState(1)\n"
    "with open(sys.argv[2], 'w') as out:\n"
    "    for t in range(300):\n"
    "        n = int(rs.randint(1, 3001)) if t % 3 else int(rs.randint(1, 60))\n"
    "        keys = rs.randint(11, 11 + int(rs.randint(1, 40)), size=n).astype(np.int32)\n"
    "        order = emu.unstable_argsort(keys)\n"
    "        out.write(' '.join(map(str, [n] + keys.tolist() + order.tolist())) + '\\n')\n";

static int test_argsort(void)
{
    /* the system python first: a python3 earlier in PATH may lack numpy */
    const char *py = "/usr/bin/python3";
    if (tu_run("%s -c 'import numpy' >/dev/null 2>&1", py) != 0) py = "python3";
    if (tu_run("%s -c 'import numpy' >/dev/null 2>&1", py) != 0) {
        printf("SKIPPED: python3 with numpy is not available, cannot run the argsort emulation\n");
        return 0;
    }
    const char *emu = tu_need(tu_path("%s/spec/seed_argsort_emulation.py", tu_shared()));
    const char *dir = tu_tmpdir();
    const char *script = tu_path("%s/argsort.py", dir), *out = tu_path("%s/orders.txt", dir);
    FILE *f = fopen(script, "w");
    fputs(argsort_script, f);
    fclose(f);
    int rc = tu_run("%s %s %s %s", py, script, emu, out);
    TU_CHECK(rc == 0, "the emulation script failed (%d)", rc);
    f = fopen(out, "r");
    TU_CHECK(f != NULL, "no output from the emulation script");
    if (!f) return tu_finish();
    int vectors = 0, mismatched = 0, maxn = 0, nties_scrambled = 0;
    long long n;
    while (fscanf(f, "%lld", &n) == 1) {
        int32_t *keys = malloc(sizeof *keys * (size_t)n);
        int64_t *ref = malloc(sizeof *ref * (size_t)n), *mine = malloc(sizeof *mine * (size_t)n);
        for (long long i = 0; i < n; i++) {
            int k;
            if (fscanf(f, "%d", &k) != 1) k = -1;
            keys[i] = k;
        }
        for (long long i = 0; i < n; i++) {
            long long o;
            if (fscanf(f, "%lld", &o) != 1) o = -1;
            ref[i] = o;
        }
        cp_seed_argsort(keys, n, mine);
        mismatched += memcmp(mine, ref, sizeof *ref * (size_t)n) != 0;
        for (long long i = 1; i < n; i++)
            if (keys[ref[i]] == keys[ref[i - 1]] && ref[i] < ref[i - 1]) {
                nties_scrambled++; /* the emulation really is unstable here */
                break;
            }
        vectors++;
        maxn = n > maxn ? (int)n : maxn;
        free(keys);
        free(ref);
        free(mine);
    }
    fclose(f);
    printf("argsort: %d vectors (lengths up to %d, %d with ties out of input order): %d differ\n",
           vectors, maxn, nties_scrambled, mismatched);
    TU_CHECK(vectors == 300 && mismatched == 0 && nties_scrambled > 0,
             "%d of %d vectors ordered differently", mismatched, vectors);
    tu_run("rm -rf %s", dir);
    return tu_finish();
}

/* ---- unit tests on hand-made end points ---- */

/* Appends `count` particles ending at (y, x) with consecutive sources from *src. */
static void put(cp_particle *p, int64_t *n, int64_t *src, int count, float y, float x)
{
    for (int i = 0; i < count; i++) p[(*n)++] = (cp_particle){.src = (*src)++, .py = y, .px = x};
}

static uint32_t max_label(const uint32_t *l, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    return m;
}

static void unit_seed_rule(void)
{
    enum { L = 40 };
    cp_particle p[64];
    uint32_t lab[L * L];
    int64_t n = 0, src = 0, K = -1;
    char err[CP_ERR_LEN];
    put(p, &n, &src, 11, 5, 5);    /* 11 > 10: seed */
    put(p, &n, &src, 10, 20, 20);  /* 10: no seed */
    put(p, &n, &src, 11, 30, 5.5f); /* tie within the 5x5 window: both are seeds... */
    put(p, &n, &src, 11, 30, 7.9f); /* ...at columns 5 and 7 */
    int rc = cp_masks_raw(p, n, L, L, 0.4, lab, &K, err);
    printf("seed rule: rc %d, %lld seeds, %u labels\n", rc, (long long)K, max_label(lab, L * L));
    TU_CHECK(rc == 0 && K == 3, "expected 3 seeds, got %lld (%s)", (long long)K, err);
    TU_CHECK(lab[0] == 1 && lab[11] == 0 && lab[21] == 2 && lab[32] == 3,
             "labels %u %u %u %u, expected 1 0 2 3", lab[0], lab[11], lab[21], lab[32]);
}

/* Seeds A (10,10) and B (10,14) joined by cells of count 3; (10,16) is reachable from B only.
 * The seed with the larger count is grown last and wins the shared cells. */
static void unit_overlap(int a_count, int b_count, uint32_t expect_a, uint32_t expect_b)
{
    enum { L = 30 };
    cp_particle p[64];
    uint32_t lab[L * L];
    int64_t n = 0, src = 0, K = 0;
    char err[CP_ERR_LEN];
    put(p, &n, &src, 3, 10, 16); /* sources 0..2: first in raster order */
    put(p, &n, &src, a_count, 10, 10);
    put(p, &n, &src, b_count, 10, 14);
    for (int x = 11; x <= 15; x++)
        if (x != 14) put(p, &n, &src, 3, 10, (float)x);
    int rc = cp_masks_raw(p, n, L, L, 0.4, lab, &K, err);
    printf("overlap A %d B %d: %lld seeds, label of A %u, of B %u, of (10,16) %u\n", a_count, b_count,
           (long long)K, lab[3], lab[3 + a_count], lab[0]);
    TU_CHECK(rc == 0 && K == 2 && lab[3] == expect_a && lab[3 + a_count] == expect_b && lab[0] == 1,
             "A %d B %d: labels A %u B %u (10,16) %u, expected %u %u 1", a_count, b_count, lab[3],
             lab[3 + a_count], lab[0], expect_a, expect_b);
}

static void unit_big_masks(void)
{
    /* 10 x 11 plane, fraction 0.1: the f64 limit 110 * 0.1 is exactly 11, and removal is strict */
    enum { LY = 10, LX = 11 };
    cp_particle p[64];
    uint32_t lab[LY * LX];
    int64_t n = 0, src = 0, K = 0;
    char err[CP_ERR_LEN];
    put(p, &n, &src, 12, 2, 2); /* 12 pixels > limit: removed */
    put(p, &n, &src, 11, 7, 8); /* 11 pixels, not > 11: kept, renumbered to 1 */
    int rc = cp_masks_raw(p, n, LY, LX, 0.1, lab, &K, err);
    printf("big masks: %lld seeds, first mask -> %u, second -> %u\n", (long long)K, lab[0], lab[12]);
    TU_CHECK(rc == 0 && K == 2 && lab[0] == 0 && lab[11] == 0 && lab[12] == 1 && lab[22] == 1,
             "big masks: labels %u %u, expected 0 1", lab[0], lab[12]);
    /* a fraction that removes both leaves an all-zero plane */
    rc = cp_masks_raw(p, n, LY, LX, 0.05, lab, &K, err);
    TU_CHECK(rc == 0 && max_label(lab, LY * LX) == 0, "fraction 0.05: masks left");
    /* no particles, no seeds: zeros */
    rc = cp_masks_raw(p, 0, LY, LX, 0.4, lab, &K, err);
    TU_CHECK(rc == 0 && K == 0 && max_label(lab, LY * LX) == 0, "no particles: masks or seeds");
}

static void expect_error(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, int code,
                         const char *msg)
{
    uint32_t lab[100];
    int64_t K;
    char err[CP_ERR_LEN] = "";
    int rc = cp_masks_raw(p, n, Ly, Lx, 0.4, lab, &K, err);
    printf("bad input -> %d \"%s\"\n", rc, err);
    TU_CHECK(rc == code && strcmp(err, msg) == 0, "got %d \"%s\", expected %d \"%s\"", rc, err, code, msg);
}

static void unit_bad_input(void)
{
    cp_particle p[2] = {{.src = 0, .py = 1, .px = 1}, {.src = 1, .py = 9.5f, .px = 0}};
    expect_error(p, 2, 10, 10, CP_EDATA, "masks: particle 1: end point (9.5, 0) outside the 10 x 10 plane");
    p[1] = (cp_particle){.src = 1, .py = 2, .px = NAN};
    expect_error(p, 2, 10, 10, CP_EDATA, "masks: particle 1: end point (2, nan) outside the 10 x 10 plane");
    p[1] = (cp_particle){.src = 100, .py = 2, .px = 2};
    expect_error(p, 2, 10, 10, CP_EDATA, "masks: particle 1: source pixel 100 outside the 10 x 10 plane");
    expect_error(p, 0, 0, 10, CP_EPARAM, "masks: plane size 0 x 10 is empty");
}

static int test_unit(void)
{
    unit_seed_rule();
    unit_overlap(12, 11, 2, 2); /* A wins everything: (10,16) is B's (label 1), A is label 2 */
    unit_overlap(11, 12, 1, 1); /* B wins everything, its region starts at (10,16) */
    unit_big_masks();
    unit_bad_input();
    return tu_finish();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "case") == 0) return test_case(argv[2], argc > 3 ? argv[3] : "");
    if (argc == 2 && strcmp(argv[1], "argsort") == 0) return test_argsort();
    if (argc == 2 && strcmp(argv[1], "unit") == 0) return test_unit();
    fprintf(stderr, "usage: test_masks case <name> [stitch025] | argsort | unit\n");
    return 2;
}
