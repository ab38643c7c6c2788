/* From end points to raw masks (CELLPOSE_ALGORITHM.md §4.4-4.6): the histogram of end points,
 * its seeds, Cellpose's seed order (a port of libstdc++'s introsort as restated by
 * spec/seed_argsort_emulation.py), the growth of each seed, the assignment of every particle,
 * big-mask removal and renumbering by first appearance. */
#include "masks.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "renumber.h"

/* ---- seed order: libstdc++ std::sort on (count, index) pairs compared by count only ---- */

typedef struct kv {
    int32_t key;
    int64_t idx;
} kv;

enum { SORT_THRESHOLD = 16 };

static inline int kv_less(kv a, kv b) { return a.key < b.key; }

static inline void kv_swap(kv *v, int64_t a, int64_t b)
{
    kv t = v[a];
    v[a] = v[b];
    v[b] = t;
}

static void unguarded_linear_insert(kv *v, int64_t last)
{
    kv val = v[last];
    int64_t next = last - 1;
    while (kv_less(val, v[next])) {
        v[last] = v[next];
        last = next;
        next--;
    }
    v[last] = val;
}

static void insertion_sort(kv *v, int64_t first, int64_t last)
{
    if (first == last) return;
    for (int64_t i = first + 1; i < last; i++) {
        if (kv_less(v[i], v[first])) {
            kv val = v[i];
            memmove(v + first + 1, v + first, (size_t)(i - first) * sizeof *v);
            v[first] = val;
        } else {
            unguarded_linear_insert(v, i);
        }
    }
}

static void move_median_to_first(kv *v, int64_t result, int64_t a, int64_t b, int64_t c)
{
    if (kv_less(v[a], v[b])) {
        if (kv_less(v[b], v[c])) kv_swap(v, result, b);
        else if (kv_less(v[a], v[c])) kv_swap(v, result, c);
        else kv_swap(v, result, a);
    } else if (kv_less(v[a], v[c])) {
        kv_swap(v, result, a);
    } else if (kv_less(v[b], v[c])) {
        kv_swap(v, result, c);
    } else {
        kv_swap(v, result, b);
    }
}

static int64_t unguarded_partition(kv *v, int64_t first, int64_t last, int64_t pivot)
{
    for (;;) {
        while (kv_less(v[first], v[pivot])) first++;
        last--;
        while (kv_less(v[pivot], v[last])) last--;
        if (!(first < last)) return first;
        kv_swap(v, first, last);
        first++;
    }
}

/* Heap on b[0..len): sift the hole down to a leaf, then push `value` up from there. */
static void adjust_heap(kv *b, int64_t hole, int64_t len, kv value)
{
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (kv_less(b[child], b[child - 1])) child--;
        b[hole] = b[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        b[hole] = b[child - 1];
        hole = child - 1;
    }
    int64_t parent = (hole - 1) / 2;
    while (hole > top && kv_less(b[parent], value)) {
        b[hole] = b[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    b[hole] = value;
}

static void heap_sort(kv *v, int64_t first, int64_t last)
{
    kv *b = v + first;
    int64_t n = last - first;
    if (n >= 2)
        for (int64_t parent = (n - 2) / 2;; parent--) {
            adjust_heap(b, parent, n, b[parent]);
            if (parent == 0) break;
        }
    for (int64_t len = n; len > 1;) {
        len--;
        kv value = b[len];
        b[len] = b[0];
        adjust_heap(b, 0, len, value);
    }
}

static void introsort_loop(kv *v, int64_t first, int64_t last, int depth)
{
    while (last - first > SORT_THRESHOLD) {
        if (depth == 0) {
            heap_sort(v, first, last);
            return;
        }
        depth--;
        int64_t mid = first + (last - first) / 2;
        move_median_to_first(v, first, first + 1, mid, last - 1);
        int64_t cut = unguarded_partition(v, first + 1, last, first);
        introsort_loop(v, cut, last, depth);
        last = cut;
    }
}

/* Sorts v[0..n) by key exactly as std::sort does (introsort, then the final insertion sort). */
static void sort_seeds(kv *v, int64_t n)
{
    if (n <= 0) return;
    int log2n = 0;
    while ((n >> (log2n + 1)) > 0) log2n++;
    introsort_loop(v, 0, n, 2 * log2n);
    if (n > SORT_THRESHOLD) {
        insertion_sort(v, 0, SORT_THRESHOLD);
        for (int64_t i = SORT_THRESHOLD; i < n; i++) unguarded_linear_insert(v, i);
    } else {
        insertion_sort(v, 0, n);
    }
}

void cp_seed_argsort(const int32_t *counts, int64_t n, int64_t *order)
{
    if (n <= 0) return;
    kv *v = malloc((size_t)n * sizeof *v);
    if (!v) abort(); /* 16 bytes per seed; cp_masks_raw reports this case as an error instead */
    for (int64_t i = 0; i < n; i++) v[i] = (kv){counts[i], i};
    sort_seeds(v, n);
    for (int64_t i = 0; i < n; i++) order[i] = v[i].idx;
    free(v);
}

/* ---- histogram, seeds, growth ---- */

int cp_masks_histogram(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, int32_t *h,
                       char *err)
{
    const int64_t W = Lx + 2 * CP_RPAD;
    for (int64_t i = 0; i < n; i++) {
        float py = p[i].py, px = p[i].px;
        /* written so that NaN fails too */
        if (!(py >= 0.0f && py <= (float)(Ly - 1) && px >= 0.0f && px <= (float)(Lx - 1)))
            return cp_errf(err, CP_EDATA,
                           "masks: particle %lld: end point (%g, %g) outside the %lld x %lld plane",
                           (long long)i, (double)py, (double)px, (long long)Ly, (long long)Lx);
        if (p[i].src < 0 || p[i].src >= Ly * Lx)
            return cp_errf(err, CP_EDATA,
                           "masks: particle %lld: source pixel %lld outside the %lld x %lld plane",
                           (long long)i, (long long)p[i].src, (long long)Ly, (long long)Lx);
        h[((int64_t)py + CP_RPAD) * W + (int64_t)px + CP_RPAD]++;
    }
    return 0;
}

/* 1 if h at (z, y, x) is the maximum of its 5x5x5 box, clipped at the border of the grid G. */
static int is_local_max(const int32_t *h, const int64_t G[3], int64_t z, int64_t y, int64_t x)
{
    const int32_t c = h[(z * G[1] + y) * G[2] + x];
    const int64_t lo[3] = {z > 2 ? z - 2 : 0, y > 2 ? y - 2 : 0, x > 2 ? x - 2 : 0};
    const int64_t hi[3] = {z + 2 < G[0] ? z + 2 : G[0] - 1, y + 2 < G[1] ? y + 2 : G[1] - 1,
                           x + 2 < G[2] ? x + 2 : G[2] - 1};
    for (int64_t zz = lo[0]; zz <= hi[0]; zz++)
        for (int64_t yy = lo[1]; yy <= hi[1]; yy++)
            for (int64_t xx = lo[2]; xx <= hi[2]; xx++)
                if (h[(zz * G[1] + yy) * G[2] + xx] > c) return 0;
    return 1;
}

int cp_masks_grid_seeds(const int32_t *h, const int64_t G[3], cp_seed **seeds, int64_t *nseeds,
                        char *err)
{
    int64_t n = 0, cap = 0, i = 0;
    cp_seed *s = NULL;
    for (int64_t z = 0; z < G[0]; z++)
        for (int64_t y = 0; y < G[1]; y++)
            for (int64_t x = 0; x < G[2]; x++, i++) {
                if (h[i] <= 10 || !is_local_max(h, G, z, y, x)) continue;
                if (n == cap) {
                    cap = cap ? 2 * cap : 256;
                    cp_seed *t = realloc(s, (size_t)cap * sizeof *s);
                    if (!t) {
                        free(s);
                        return cp_errf(err, CP_ENOMEM, "masks: cannot allocate %lld seeds",
                                       (long long)cap);
                    }
                    s = t;
                }
                s[n++] = (cp_seed){.idx = i, .count = h[i]};
            }
    *seeds = s;
    *nseeds = n;
    return 0;
}

int cp_masks_seeds(const int32_t *h, int64_t Ly, int64_t Lx, cp_seed **seeds, int64_t *nseeds,
                   char *err)
{
    const int64_t G[3] = {1, Ly + 2 * CP_RPAD, Lx + 2 * CP_RPAD};
    return cp_masks_grid_seeds(h, G, seeds, nseeds, err);
}

enum { GROW_R = 5, GROW_N = 2 * GROW_R + 1 };

void cp_masks_grow(const int32_t *h, int64_t Lx, cp_seed s, uint32_t label, uint32_t *M)
{
    const int64_t W = Lx + 2 * CP_RPAD;
    const int64_t base = s.idx - GROW_R * W - GROW_R; /* top-left of the 11x11 window */
    uint8_t in[GROW_N][GROW_N], cur[GROW_N][GROW_N] = {{0}}, next[GROW_N][GROW_N];
    for (int y = 0; y < GROW_N; y++)
        for (int x = 0; x < GROW_N; x++) in[y][x] = h[base + y * W + x] > 2;
    cur[GROW_R][GROW_R] = 1;
    for (int it = 0; it < GROW_R; it++) {
        for (int y = 0; y < GROW_N; y++)
            for (int x = 0; x < GROW_N; x++) {
                uint8_t any = 0;
                for (int yy = y - 1; yy <= y + 1; yy++)
                    for (int xx = x - 1; xx <= x + 1; xx++)
                        if (yy >= 0 && yy < GROW_N && xx >= 0 && xx < GROW_N) any |= cur[yy][xx];
                next[y][x] = any & in[y][x];
            }
        memcpy(cur, next, sizeof cur);
    }
    for (int y = 0; y < GROW_N; y++)
        for (int x = 0; x < GROW_N; x++)
            if (cur[y][x]) M[base + y * W + x] = label;
}

/* ---- assignment, big masks, renumbering ---- */

int cp_masks_assign(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, const uint32_t *M,
                    uint32_t nlabels, double max_size_fraction, uint32_t *labels, char *err)
{
    const int64_t W = Lx + 2 * CP_RPAD;
    memset(labels, 0, (size_t)(Ly * Lx) * sizeof *labels);
    for (int64_t i = 0; i < n; i++)
        labels[p[i].src] = M[((int64_t)p[i].py + CP_RPAD) * W + (int64_t)p[i].px + CP_RPAD];
    return cp_masks_finish(labels, Ly * Lx, nlabels, max_size_fraction, err);
}

int cp_masks_finish(uint32_t *labels, int64_t npix, uint32_t nlabels, double max_size_fraction,
                    char *err)
{
    int64_t *count = calloc((size_t)nlabels + 1, sizeof *count);
    uint32_t *to = malloc(((size_t)nlabels + 1) * sizeof *to);
    if (!count || !to) {
        free(count);
        free(to);
        return cp_errf(err, CP_ENOMEM, "masks: cannot allocate tables for %lu labels",
                       (unsigned long)nlabels);
    }
    for (int64_t i = 0; i < npix; i++) count[labels[i]]++;
    /* big masks removed, then ids by first appearance */
    to[0] = 0;
    for (int64_t v = 1; v <= nlabels; v++)
        to[v] = !cp_masks_too_big(count[v], npix, max_size_fraction);
    int64_t kept = cp_renumber_array(labels, npix, nlabels, to);
    free(count);
    free(to);
    return kept < 0 ? cp_errf(err, CP_ENOMEM, "masks: cannot allocate the ids of %lu labels",
                              (unsigned long)nlabels)
                    : 0;
}

int cp_masks_too_big(int64_t count, int64_t npix, double max_size_fraction)
{
    return (double)count > (double)npix * max_size_fraction;
}

int cp_masks_raw(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx,
                 double max_size_fraction, uint32_t *labels, int64_t *nseeds, char *err)
{
    if (Ly <= 0 || Lx <= 0)
        return cp_errf(err, CP_EPARAM, "masks: plane size %lld x %lld is empty", (long long)Ly,
                       (long long)Lx);
    const size_t cells = (size_t)((Ly + 2 * CP_RPAD) * (Lx + 2 * CP_RPAD));
    int32_t *h = calloc(cells, sizeof *h);
    uint32_t *M = calloc(cells, sizeof *M);
    cp_seed *seeds = NULL;
    kv *order = NULL;
    int64_t K = 0;
    int rc = 0;
    *nseeds = 0;
    if (!h || !M) {
        rc = cp_errf(err, CP_ENOMEM, "masks: cannot allocate the %lld x %lld histogram",
                     (long long)(Ly + 2 * CP_RPAD), (long long)(Lx + 2 * CP_RPAD));
        goto done;
    }
    if ((rc = cp_masks_histogram(p, n, Ly, Lx, h, err))) goto done;
    if ((rc = cp_masks_seeds(h, Ly, Lx, &seeds, &K, err))) goto done;
    if (K > UINT32_MAX - 1) {
        rc = cp_errf(err, CP_EDATA, "masks: %lld seeds exceed the uint32 label range", (long long)K);
        goto done;
    }
    order = malloc((size_t)(K ? K : 1) * sizeof *order);
    if (!order) {
        rc = cp_errf(err, CP_ENOMEM, "masks: cannot allocate the order of %lld seeds", (long long)K);
        goto done;
    }
    for (int64_t k = 0; k < K; k++) order[k] = (kv){seeds[k].count, k};
    sort_seeds(order, K);
    for (int64_t k = 0; k < K; k++) cp_masks_grow(h, Lx, seeds[order[k].idx], (uint32_t)(k + 1), M);
    *nseeds = K;
    rc = cp_masks_assign(p, n, Ly, Lx, M, (uint32_t)K, max_size_fraction, labels, err);
done:
    free(h);
    free(M);
    free(seeds);
    free(order);
    return rc;
}
