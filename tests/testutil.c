/* Test support (see testutil.h). */
#include "testutil.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tiffio.h>
#include <time.h>
#include <unistd.h>

int tu_failed, tu_passed;
static char tmpdir[256]; /* tu_tmpdir's, once made */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *tu_shared(void)
{
    static char root[4096];
    if (root[0]) return root;
    const char *s = getenv("CELLPOSE_MPI_SHARED");
    const char *def = getenv("CELLPOSE_MPI_SHARED_DEFAULT");
    const char *bundled = getenv("CP_TEST_DATA");
    if (!def || !*def) def = "../shared";
    if (!s || !*s) {
        char ref[4200];
        snprintf(ref, sizeof ref, "%s/reference", def);
        s = is_dir(ref) || !bundled || !*bundled ? def : bundled;
    }
    snprintf(root, sizeof root, "%s", s);
    return root;
}

int tu_bundled(void)
{
    static int known = -1;
    if (known < 0) {
        const char *b = getenv("CP_TEST_DATA");
        struct stat s1, s2; /* the same folder, however spelled */
        known = b && *b && stat(tu_shared(), &s1) == 0 && stat(b, &s2) == 0 &&
                s1.st_dev == s2.st_dev && s1.st_ino == s2.st_ino;
    }
    return known;
}

int tu_have(const char *path)
{
    const char *root = tu_shared();
    size_t n = strlen(root);
    if (!tu_bundled() || strncmp(path, root, n) || (path[n] && path[n] != '/')) return 1;
    return access(path, R_OK) == 0;
}

void tu_skip(const char *path)
{
    const char *root = tu_shared();
    size_t n = strlen(root);
    const char *rel = strncmp(path, root, n) == 0 && path[n] == '/' ? path + n + 1 : path;
    int init = 0, fin = 0, rank = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) /* scripts/test.sh counts the tests that print this line */
        fprintf(stderr, "skipped: %s is in the extended parity suite (../shared not found; set "
                        "CELLPOSE_MPI_SHARED)\n", rel);
    fflush(NULL);
    if (tmpdir[0]) tu_run("rm -rf '%s'", tmpdir); /* this process's own, if it made one */
    if (init && !fin) MPI_Finalize();
    exit(77);
}

const char *tu_need(const char *path)
{
    if (!tu_have(path)) tu_skip(path);
    return path;
}

const char *tu_build_dir(void)
{
    const char *s = getenv("CP_BUILD_DIR");
    return (s && *s) ? s : ".";
}

const char *tu_path(const char *fmt, ...)
{
    static char ring[16][4096];
    static int next;
    char *buf = ring[next++ % 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof ring[0], fmt, ap);
    va_end(ap);
    return buf;
}

static void die(const char *path, const char *what)
{
    fprintf(stderr, "testutil: %s: %s\n", path, what);
    exit(2);
}

static void store(tu_tiff *t, int64_t at, const unsigned char *p, int bits, int fmt)
{
    double v;
    uint32_t u = 0;
    if (fmt == SAMPLEFORMAT_IEEEFP && bits == 32) {
        float f;
        memcpy(&f, p, 4);
        v = f;
    } else if (fmt == SAMPLEFORMAT_IEEEFP && bits == 64) {
        memcpy(&v, p, 8);
    } else if (bits == 8) {
        u = p[0];
        v = u;
    } else if (bits == 16) {
        uint16_t w;
        memcpy(&w, p, 2);
        u = w;
        v = u;
    } else if (bits == 32) {
        memcpy(&u, p, 4);
        v = u;
    } else {
        die("tiff", "unsupported sample type in oracle file");
        return;
    }
    t->f32[at] = (float)v;
    if (t->u32) t->u32[at] = u;
}

tu_tiff tu_read_tiff(const char *path)
{
    tu_tiff t = {0};
    tu_need(path);
    TIFF *tif = TIFFOpen(path, "r");
    if (!tif) die(path, "cannot open");
    t.pages = TIFFNumberOfDirectories(tif);
    uint32_t w = 0, h = 0;
    uint16_t spp = 1, bits = 8, fmt = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG;
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    if (planar != PLANARCONFIG_CONTIG || TIFFIsTiled(tif)) die(path, "oracle reader expects contiguous strips");
    t.ny = h, t.nx = w, t.spp = spp;
    t.n = t.pages * t.ny * t.nx * t.spp;
    t.f32 = malloc(sizeof(float) * (size_t)t.n);
    if (fmt != SAMPLEFORMAT_IEEEFP) t.u32 = malloc(sizeof(uint32_t) * (size_t)t.n);
    tmsize_t sl = TIFFScanlineSize(tif);
    unsigned char *line = malloc((size_t)sl);
    int bytes = bits / 8;
    for (int64_t pg = 0; pg < t.pages; pg++) {
        if (pg > 0 && !TIFFSetDirectory(tif, (tdir_t)pg)) die(path, "cannot read page");
        for (uint32_t r = 0; r < h; r++) {
            if (TIFFReadScanline(tif, line, r, 0) < 0) die(path, "cannot read scanline");
            for (int64_t i = 0; i < (int64_t)w * spp; i++)
                store(&t, (pg * t.ny + r) * t.nx * t.spp + i, line + i * bytes, bits, fmt);
        }
    }
    free(line);
    TIFFClose(tif);
    return t;
}

void tu_tiff_free(tu_tiff *t)
{
    free(t->f32);
    free(t->u32);
    memset(t, 0, sizeof *t);
}

json_object *tu_case_json(const char *name)
{
    const char *p = tu_need(tu_path("%s/reference/%s/case.json", tu_shared(), name));
    json_object *j = json_object_from_file(p);
    if (!j) die(p, "cannot parse JSON");
    return j;
}

/* Keys may contain dots themselves ("files.dP.tif.path"): at each level the longest run of
 * components that names a key is taken. */
json_object *tu_json_get(json_object *j, const char *dotted)
{
    char key[512];
    const char *s = dotted;
    while (j && *s) {
        size_t len = strlen(s);
        json_object *next = NULL;
        while (len > 0) {
            if (len < sizeof key && (s[len] == 0 || s[len] == '.')) {
                memcpy(key, s, len);
                key[len] = 0;
                if (json_object_object_get_ex(j, key, &next)) break;
            }
            len--;
        }
        if (!len) return NULL;
        j = next;
        s += len + (s[len] == '.');
    }
    return j;
}

int tu_finish(void)
{
    printf("%d passed, %d failed\n", tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

double tu_maxabs(const float *a, const float *b, int64_t n, int64_t *where)
{
    double worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(a[i]) != isnan(b[i])) d = INFINITY;
        else if (isnan(a[i])) d = 0;
        if (d > worst || at < 0) worst = d, at = i;
    }
    if (where) *where = at;
    return worst;
}

int64_t tu_count_diff_u32(const uint32_t *a, const uint32_t *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* Checks that the map a -> b is a bijection on the labels present, with 0 <-> 0. */
static int maps_injectively(const uint32_t *a, const uint32_t *b, int64_t n)
{
    uint32_t amax = 0;
    for (int64_t i = 0; i < n; i++) amax = a[i] > amax ? a[i] : amax;
    uint32_t *to = calloc((size_t)amax + 1, sizeof *to);
    uint8_t *seen = calloc((size_t)amax + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        if ((a[i] == 0) != (b[i] == 0)) ok = 0;
        else if (!seen[a[i]]) seen[a[i]] = 1, to[a[i]] = b[i];
        else if (to[a[i]] != b[i]) ok = 0;
    }
    free(to);
    free(seen);
    return ok;
}

int tu_same_up_to_renumbering(const uint32_t *a, const uint32_t *b, int64_t n)
{
    return maps_injectively(a, b, n) && maps_injectively(b, a, n);
}

int tu_run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

const char *tu_tmpdir(void)
{
    char *dir = tmpdir;
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof tmpdir, "%s/cptest.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) die(dir, "cannot create temporary directory");
    }
    return dir;
}

static void *h5_read(const char *path, const char *dset, hid_t type, size_t size, int64_t *n)
{
    tu_need(path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    void *buf = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, dset, H5P_DEFAULT);
    if (d >= 0) {
        hid_t s = H5Dget_space(d);
        *n = H5Sget_simple_extent_npoints(s);
        buf = malloc(size * (size_t)(*n ? *n : 1));
        if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) free(buf), buf = NULL;
        H5Sclose(s);
        H5Dclose(d);
    }
    if (f >= 0) H5Fclose(f);
    if (!buf) fprintf(stderr, "testutil: %s: cannot read dataset %s\n", path, dset);
    return buf;
}

float *tu_h5_read_f32(const char *path, const char *dset, int64_t *n)
{
    return h5_read(path, dset, H5T_NATIVE_FLOAT, sizeof(float), n);
}

uint32_t *tu_h5_read_u32(const char *path, const char *dset, int64_t *n)
{
    return h5_read(path, dset, H5T_NATIVE_UINT32, sizeof(uint32_t), n);
}

double tu_h5_attr(const char *path, const char *name)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    double v = NAN;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = f < 0 ? -1 : H5Aopen(f, name, H5P_DEFAULT);
    if (a >= 0) {
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) v = NAN;
        H5Aclose(a);
    }
    if (f >= 0) H5Fclose(f);
    return v;
}

double tu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int tu_cellpose_pids(const char *needle, long *pids, int max)
{
    DIR *d = opendir("/proc");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) && n < max;) {
        char path[300], cmd[8192];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t len = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        cmd[len] = 0;
        size_t a0 = strlen(cmd); /* argv[0] */
        for (size_t i = 0; i < len; i++) cmd[i] = cmd[i] ? cmd[i] : ' ';
        if (a0 >= 12 && !strncmp(cmd + a0 - 12, "cellpose-mpi", 12) && strstr(cmd, needle))
            pids[n++] = atol(e->d_name);
    }
    if (d) closedir(d);
    return n;
}

int tu_blocks_on_disk(const char *work)
{
    DIR *d = opendir(work);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        int net = !strncmp(e->d_name, "dp.z0.", 6) || !strncmp(e->d_name, "dp3.", 4);
        n += net && !(len > 4 && !strcmp(e->d_name + len - 4, ".tmp"));
    }
    if (d) closedir(d);
    return n;
}
