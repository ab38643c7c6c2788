/* Stitching of a stack's planes where they are (see dstitch.h). Cellpose's stitch3D gives plane
 * z+1 its ids from the IoU of its labels with the stitched ids of plane z; the IoU needs only
 * the overlap counts of the two planes' original labels and their areas. Those tables are made
 * by the planes' owners at once (the pair across a rank boundary with one plane sent over),
 * kept in the store; the ids are then chosen plane after plane from the tables alone, along the
 * ranks in order, exactly as stitch_pair in src/post.c chooses them (the same integer counts,
 * the same division in double, the same column order for ties), each rank sending the map of
 * its last plane's labels to the next. Finally every rank relabels its own planes. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "dstitch.h"

void cp_dvol_range(int64_t nz, int nranks, int r, int64_t *z0, int64_t *z1)
{
    *z0 = nz * r / nranks;
    *z1 = nz * (r + 1) / nranks;
}

void cp_dvol_init(cp_dvol *v, MPI_Comm comm, const cp_bstore *s, const char *name, int64_t nz,
                  int64_t ny, int64_t nx)
{
    *v = (cp_dvol){.comm = comm, .store = s, .name = name, .nz = nz, .ny = ny, .nx = nx};
    MPI_Comm_rank(comm, &v->rank);
    MPI_Comm_size(comm, &v->nranks);
    cp_dvol_range(nz, v->nranks, v->rank, &v->z0, &v->z1);
}

int cp_dvol_owner(const cp_dvol *v, int64_t z)
{
    int64_t z0, z1;
    for (int r = 0; r < v->nranks; r++) {
        cp_dvol_range(v->nz, v->nranks, r, &z0, &z1);
        if (z >= z0 && z < z1) return r;
    }
    return -1;
}

int cp_dvol_get(const cp_dvol *v, int64_t z, uint32_t *plane, char *err)
{
    return cp_bstore_get(v->store, v->name, z, plane, sizeof *plane * (size_t)(v->ny * v->nx),
                         err);
}

int cp_dvol_put(const cp_dvol *v, int64_t z, const uint32_t *plane, char *err)
{
    return cp_bstore_put(v->store, v->name, z, plane, sizeof *plane * (size_t)(v->ny * v->nx),
                         err);
}

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dstitch.c: out of memory for %s", what);
}

static int too_many(char *err)
{
    return cp_errf(err, CP_EDATA, "dstitch.c: stitch: more than %u labels in the stack",
                   UINT32_MAX);
}

static void scratch_name(const cp_dvol *v, const char *what, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%s", v->name, what);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t max_label(const uint32_t *l, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    return m;
}

/* The table of the pair (plane a = z, plane b = z-1), original labels, as int64: maxa, maxb,
 * nov, area_a[0..maxa], area_b[0..maxb], then nov triples (a, b, overlap) sorted by a, b. */
static int pair_table(const uint32_t *a, const uint32_t *b, int64_t n, int64_t **table,
                      size_t *bytes, char *err)
{
    uint32_t maxa = max_label(a, n), maxb = max_label(b, n);
    int64_t *rs = calloc((size_t)maxa + 2, sizeof *rs);
    uint32_t *bs = malloc(sizeof *bs * (size_t)n);
    if (!rs || !bs) {
        free(rs);
        free(bs);
        return oom(err, "the overlaps of two planes");
    }
    for (int64_t i = 0; i < n; i++) rs[a[i] + 1] += a[i] && b[i];
    for (uint32_t v = 1; v <= maxa; v++) rs[v + 1] += rs[v];
    for (int64_t i = 0; i < n; i++)
        if (a[i] && b[i]) bs[rs[a[i]]++] = b[i];
    for (uint32_t v = maxa; v >= 1; v--) rs[v] = rs[v - 1]; /* undo the advance */
    int64_t nov = 0;
    for (uint32_t v = 1; v <= maxa; v++) {
        uint32_t *c = bs + rs[v];
        size_t len = (size_t)(rs[v + 1] - rs[v]);
        qsort(c, len, sizeof *c, cmp_u32);
        for (size_t k = 0; k < len; k++) nov += k == 0 || c[k] != c[k - 1];
    }
    size_t cnt = 3 + (size_t)maxa + 1 + (size_t)maxb + 1 + 3 * (size_t)nov;
    int64_t *t = calloc(cnt, sizeof *t);
    if (!t) {
        free(rs);
        free(bs);
        return oom(err, "the overlap table of two planes");
    }
    int64_t *area_a = t + 3, *area_b = area_a + maxa + 1, *ov = area_b + maxb + 1;
    t[0] = maxa, t[1] = maxb, t[2] = nov;
    for (int64_t i = 0; i < n; i++) area_a[a[i]]++, area_b[b[i]]++;
    int64_t k = 0;
    for (uint32_t v = 1; v <= maxa; v++)
        for (int64_t i = rs[v]; i < rs[v + 1]; i++) {
            if (i > rs[v] && bs[i] == bs[i - 1]) {
                ov[3 * (k - 1) + 2]++;
                continue;
            }
            ov[3 * k] = v, ov[3 * k + 1] = bs[i], ov[3 * k + 2] = 1;
            k++;
        }
    free(rs);
    free(bs);
    *table = t;
    *bytes = sizeof *t * cnt;
    return 0;
}

/* Phase 1: the table of every own plane z > 0 with plane z-1 into "<name>.pairs" z (plane z0-1
 * comes from its owner); *max0 = the largest label of plane z0. */
static int make_tables(const cp_dvol *v, uint32_t *max0, char *err)
{
    int64_t n = v->ny * v->nx;
    uint32_t *cur = malloc(sizeof *cur * (size_t)n), *prev = malloc(sizeof *prev * (size_t)n);
    int rc = cur && prev ? 0 : oom(err, "two planes");
    if (!rc && n > INT_MAX)
        rc = cp_errf(err, CP_EUNSUPPORTED, "dstitch.c: planes of %lld pixels: at most %d",
                     (long long)n, INT_MAX);
    int own = v->z1 > v->z0;
    if (!rc && own && v->z1 < v->nz) rc = cp_dvol_get(v, v->z1 - 1, cur, err);
    if ((rc = cp_agree(v->comm, rc, err))) goto out;
    int dst = own && v->z1 < v->nz ? cp_dvol_owner(v, v->z1) : MPI_PROC_NULL;
    int src = own && v->z0 > 0 ? cp_dvol_owner(v, v->z0 - 1) : MPI_PROC_NULL;
    MPI_Sendrecv(cur, (int)n, MPI_UINT32_T, dst, 11, prev, (int)n, MPI_UINT32_T, src, 11, v->comm,
                 MPI_STATUS_IGNORE);
    char name[4200];
    scratch_name(v, "pairs", name, sizeof name);
    for (int64_t z = v->z0; !rc && z < v->z1; z++) {
        if ((rc = cp_dvol_get(v, z, cur, err))) break;
        if (z == v->z0) *max0 = max_label(cur, n);
        if (z > 0) {
            int64_t *t = NULL;
            size_t bytes = 0;
            rc = pair_table(cur, prev, n, &t, &bytes, err);
            if (!rc) rc = cp_bstore_put(v->store, name, z, t, bytes, err);
            free(t);
        }
        uint32_t *s = cur;
        cur = prev, prev = s;
    }
out:
    free(cur);
    free(prev);
    return cp_agree(v->comm, rc, err);
}

struct colov { /* a column and the overlap of a row with it */
    uint32_t col;
    int64_t ov;
};

static int cmp_colov(const void *a, const void *b)
{
    const struct colov *x = a, *y = b;
    return (x->col > y->col) - (x->col < y->col);
}

/* One step of stitch3D from table t of the pair (z, z-1) and the ids mapb of plane z-1's
 * labels: mapa (t[0]+1 entries) gets the ids of plane z's labels, *mmax advances (stitch_pair
 * and the empty-table branch of cp_post_stitch, on the table). */
static int choose_ids(const int64_t *t, const uint32_t *mapb, double threshold, uint32_t *mapa,
                      int64_t *mmax, char *err)
{
    int64_t maxa = t[0], maxb = t[1], nov = t[2];
    const int64_t *area_a = t + 3, *area_b = area_a + maxa + 1, *ov = area_b + maxb + 1;
    mapa[0] = 0;
    if (maxa == 0 || maxb == 0) {
        if (*mmax + maxa > UINT32_MAX) return too_many(err);
        for (int64_t a = 1; a <= maxa; a++) mapa[a] = (uint32_t)(*mmax + a);
        *mmax += maxa;
        return 0;
    }
    /* columns: the distinct ids of plane z-1, ascending, with the areas of their pixels */
    uint32_t *ucol = malloc(sizeof *ucol * (size_t)maxb);
    uint32_t *colof = malloc(sizeof *colof * ((size_t)maxb + 1));
    int64_t *carea = calloc((size_t)maxb + 1, sizeof *carea), *rs = calloc((size_t)maxa + 2, 8);
    double *colmax = calloc((size_t)maxb + 1, sizeof *colmax);
    struct colov *row = malloc(sizeof *row * (size_t)(nov ? nov : 1));
    int rc = ucol && colof && carea && rs && colmax && row ? 0 : oom(err, "a stitching step");
    uint32_t ncol = 0;
    if (!rc) {
        memcpy(ucol, mapb + 1, sizeof *ucol * (size_t)maxb);
        qsort(ucol, (size_t)maxb, sizeof *ucol, cmp_u32);
        for (int64_t k = 0; k < maxb; k++)
            if (ncol == 0 || ucol[k] != ucol[ncol - 1]) ucol[ncol++] = ucol[k];
        for (int64_t b = 1; b <= maxb; b++) {
            const uint32_t *f = bsearch(&mapb[b], ucol, ncol, sizeof *ucol, cmp_u32);
            colof[b] = (uint32_t)(f - ucol) + 1;
            carea[colof[b]] += area_b[b];
        }
        /* per row, its columns ascending with the overlaps summed over the labels of a column */
        int64_t m = 0;
        for (int64_t k = 0; k < nov;) {
            int64_t a = ov[3 * k], e = k, s = m;
            for (; e < nov && ov[3 * e] == a; e++)
                row[m++] = (struct colov){colof[ov[3 * e + 1]], ov[3 * e + 2]};
            qsort(row + s, (size_t)(m - s), sizeof *row, cmp_colov);
            int64_t w = s;
            for (int64_t i = s; i < m; i++)
                if (i > s && row[i].col == row[w - 1].col) row[w - 1].ov += row[i].ov;
                else row[w++] = row[i];
            m = w;
            rs[a + 1] = m - s;
            k = e;
        }
        for (int64_t a = 1; a <= maxa; a++) rs[a + 1] += rs[a];
    }
    /* Pass 1: thresholded IoU of every (row, column) pair, column maxima. Pass 2: per row the
     * first column whose IoU survives (>= column max, > 0) with the largest value. */
    for (int pass = 0; !rc && pass < 2; pass++)
        for (int64_t a = 1; !rc && a <= maxa; a++) {
            uint32_t best = 0;
            double bestv = 0;
            for (int64_t k = rs[a]; k < rs[a + 1]; k++) {
                uint32_t c = row[k].col;
                double iou = (double)row[k].ov / (double)(area_a[a] + carea[c] - row[k].ov);
                if (iou < threshold) iou = 0;
                if (pass == 0 && iou > colmax[c]) colmax[c] = iou;
                if (pass == 1 && iou >= colmax[c] && iou > bestv) bestv = iou, best = c;
            }
            if (pass == 0) continue;
            if (best) mapa[a] = ucol[best - 1];
            else if (*mmax >= UINT32_MAX) rc = too_many(err);
            else mapa[a] = (uint32_t)++*mmax;
        }
    free(ucol);
    free(colof);
    free(carea);
    free(rs);
    free(colmax);
    free(row);
    return rc;
}

/* Phase 2: the maps of the own planes into "<name>.map" z, from the map of plane z0-1 received
 * from its owner; the map of plane z1-1 goes to the owner of z1. Message: ok, mmax, maxb,
 * map[0..maxb] (ok 0 alone: this rank or an earlier one failed). *mmax: the running maximum
 * after plane z1-1. */
static int chain_maps(const cp_dvol *v, uint32_t max0, double threshold, int64_t *mmax,
                      char *err)
{
    char pairs[4200], maps[4200];
    scratch_name(v, "pairs", pairs, sizeof pairs);
    scratch_name(v, "map", maps, sizeof maps);
    uint32_t *mapb = NULL, maxb = 0;
    int rc = 0;
    if (v->z0 == 0) {
        maxb = max0, *mmax = max0;
        mapb = malloc(sizeof *mapb * ((size_t)maxb + 1));
        if (!mapb) rc = oom(err, "a map of labels");
        for (uint32_t l = 0; !rc && l <= maxb; l++) mapb[l] = l;
    } else {
        MPI_Status st;
        int cnt;
        MPI_Probe(cp_dvol_owner(v, v->z0 - 1), 12, v->comm, &st);
        MPI_Get_count(&st, MPI_UINT32_T, &cnt);
        uint32_t *msg = malloc(sizeof *msg * (size_t)cnt), dummy;
        MPI_Recv(msg ? msg : &dummy, msg ? cnt : 1, MPI_UINT32_T, st.MPI_SOURCE, 12, v->comm,
                 MPI_STATUS_IGNORE);
        if (!msg) rc = oom(err, "a map of labels");
        else if (!msg[0]) rc = cp_errf(err, CP_EIO, "dstitch.c: an earlier rank failed");
        if (!rc) {
            *mmax = msg[1], maxb = msg[2];
            mapb = malloc(sizeof *mapb * ((size_t)maxb + 1));
            if (!mapb) rc = oom(err, "a map of labels");
            else memcpy(mapb, msg + 3, sizeof *mapb * ((size_t)maxb + 1));
        }
        free(msg);
    }
    if (!rc && v->z0 == 0)
        rc = cp_bstore_put(v->store, maps, 0, mapb, sizeof *mapb * ((size_t)maxb + 1), err);
    for (int64_t z = v->z0 > 0 ? v->z0 : 1; !rc && z < v->z1; z++) {
        int64_t bytes = cp_bstore_size(v->store, pairs, z);
        int64_t *t = bytes > 0 ? malloc((size_t)bytes) : NULL;
        uint32_t *mapa = NULL;
        rc = t ? cp_bstore_get(v->store, pairs, z, t, (size_t)bytes, err)
               : cp_errf(err, CP_EIO, "dstitch.c: %s: no overlap table of plane %lld", pairs,
                         (long long)z);
        if (!rc && !(mapa = malloc(sizeof *mapa * ((size_t)t[0] + 1))))
            rc = oom(err, "a map of labels");
        if (!rc) rc = choose_ids(t, mapb, threshold, mapa, mmax, err);
        if (!rc) rc = cp_bstore_put(v->store, maps, z, mapa, sizeof *mapa * ((size_t)t[0] + 1),
                                    err);
        if (!rc) maxb = (uint32_t)t[0];
        free(t);
        free(mapb);
        mapb = mapa;
    }
    if (v->z1 < v->nz) {
        size_t cnt = rc ? 1 : (size_t)maxb + 4;
        uint32_t *msg = malloc(sizeof *msg * cnt), fail = 0;
        if (msg && !rc) {
            msg[0] = 1, msg[1] = (uint32_t)*mmax, msg[2] = maxb;
            memcpy(msg + 3, mapb, sizeof *mapb * ((size_t)maxb + 1));
        }
        if (!msg && !rc) rc = oom(err, "a map of labels");
        MPI_Send(msg && !rc ? msg : &fail, msg && !rc ? (int)cnt : 1, MPI_UINT32_T,
                 cp_dvol_owner(v, v->z1), 12, v->comm);
        free(msg);
    }
    free(mapb);
    return rc;
}

/* Phase 3: every own plane through its map. */
static int relabel(const cp_dvol *v, char *err)
{
    char maps[4200];
    scratch_name(v, "map", maps, sizeof maps);
    int64_t n = v->ny * v->nx;
    uint32_t *pl = malloc(sizeof *pl * (size_t)n);
    int rc = pl ? 0 : oom(err, "a plane");
    for (int64_t z = v->z0; !rc && z < v->z1; z++) {
        int64_t bytes = cp_bstore_size(v->store, maps, z);
        uint32_t *map = bytes > 0 ? malloc((size_t)bytes) : NULL;
        rc = map ? cp_bstore_get(v->store, maps, z, map, (size_t)bytes, err)
                 : cp_errf(err, CP_EIO, "dstitch.c: %s: no map of plane %lld", maps,
                           (long long)z);
        if (!rc) rc = cp_dvol_get(v, z, pl, err);
        for (int64_t i = 0; !rc && i < n; i++) {
            if ((int64_t)pl[i] * 4 >= bytes) {
                rc = cp_errf(err, CP_EFORMAT, "dstitch.c: %s: plane %lld: label %u beyond its map",
                             v->name, (long long)z, pl[i]);
                break;
            }
            pl[i] = map[pl[i]];
        }
        if (!rc) rc = cp_dvol_put(v, z, pl, err);
        free(map);
    }
    free(pl);
    return cp_agree(v->comm, rc, err);
}

int cp_dstitch_planes(const cp_dvol *v, double threshold, int64_t *nlabels, char *err)
{
    uint32_t max0 = 0;
    int64_t mmax = 0;
    int rc = make_tables(v, &max0, err);
    if (rc) return rc;
    if (v->z1 > v->z0) rc = chain_maps(v, max0, threshold, &mmax, err);
    if ((rc = cp_agree(v->comm, rc, err))) return rc;
    MPI_Bcast(&mmax, 1, MPI_INT64_T, cp_dvol_owner(v, v->nz - 1), v->comm);
    *nlabels = mmax;
    return relabel(v, err);
}
