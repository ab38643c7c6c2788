/* The holding relation's shared pieces (see holding.h). */
#include "holding.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "renumber.h"

int cp_kpix_cmp(const void *a, const void *b)
{
    const cp_kpix *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int cp_holding_push(uint32_t **e, int64_t *n, int64_t *cap, uint32_t v, uint32_t u)
{
    if (*n >= 2 && (*e)[*n - 2] == v && (*e)[*n - 1] == u) return 0;
    if (*n + 2 > *cap) {
        int64_t c = *cap ? 2 * *cap : 1024;
        uint32_t *p = realloc(*e, sizeof *p * (size_t)c);
        if (!p) return CP_ENOMEM;
        *e = p, *cap = c;
    }
    (*e)[(*n)++] = v;
    (*e)[(*n)++] = u;
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

int cp_holding_groups(MPI_Comm comm, uint32_t *e, int64_t ne, uint32_t *root, int64_t n,
                      char *err)
{
    if (ne) qsort(e, (size_t)(ne / 2), 2 * sizeof *e, cmp_pair);
    int64_t nu = 0;
    for (int64_t i = 0; i < ne; i += 2)
        if (nu == 0 || e[i] != e[nu - 2] || e[i + 1] != e[nu - 1])
            e[nu++] = e[i], e[nu++] = e[i + 1];
    ne = nu;
    int np, rc = 0;
    MPI_Comm_size(comm, &np);
    int *cnt = malloc(sizeof *cnt * 2 * (size_t)np);
    if (!cnt || ne > INT_MAX) rc = cp_errf(err, CP_ENOMEM, "holding.c: out of memory for edges");
    if ((rc = cp_agree(comm, rc, err))) {
        free(cnt);
        return rc;
    }
    int mine = (int)ne;
    MPI_Allgather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, comm);
    int64_t tot = 0;
    for (int k = 0; k < np; k++) cnt[np + k] = (int)tot, tot += cnt[k];
    uint32_t *all = tot > INT_MAX ? NULL : malloc(sizeof *all * (size_t)(tot ? tot : 1));
    if (!all) rc = cp_errf(err, CP_ENOMEM, "holding.c: out of memory for the edges of all ranks");
    if ((rc = cp_agree(comm, rc, err))) {
        free(cnt);
        return rc;
    }
    MPI_Allgatherv(e, mine, MPI_UINT32_T, all, cnt, cnt + np, MPI_UINT32_T, comm);
    free(cnt);
    for (int64_t l = 0; l <= n; l++) root[l] = (uint32_t)l;
    for (int64_t i = 0; i < tot; i += 2) {
        uint32_t a = all[i], b = all[i + 1];
        while (root[a] != a) a = root[a] = root[root[a]];
        while (root[b] != b) b = root[b] = root[root[b]];
        if (a < b) root[b] = a;
        else root[a] = b;
    }
    free(all);
    /* parents are smaller labels, so in increasing order root[root[l]] is already final */
    for (int64_t l = 1; l <= n; l++) root[l] = root[root[l]];
    return 0;
}

/* ---- volumes -------------------------------------------------------------------------------- */

static int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "holding.c: out of memory for %s", what);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

int cp_vstats_init(cp_vstats *s, int64_t n, char *err)
{
    s->n = n;
    s->area = calloc((size_t)n + 1, sizeof *s->area);
    s->mn = malloc(sizeof *s->mn * 7 * ((size_t)n + 1));
    if (!s->area || !s->mn) return oom(err, "per-label tables");
    for (int64_t i = 0; i < 7 * (n + 1); i++) s->mn[i] = INT64_MAX;
    return 0;
}

void cp_vstats_free(cp_vstats *s)
{
    free(s->area);
    free(s->mn);
    s->area = s->mn = NULL;
}

void cp_vstats_add(cp_vstats *s, uint32_t l, int64_t idx, int64_t z, int64_t y, int64_t x)
{
    int64_t *m = s->mn + 7 * (int64_t)l;
    s->area[l]++;
    m[0] = min64(m[0], idx);
    m[1] = min64(m[1], z), m[2] = min64(m[2], y), m[3] = min64(m[3], x);
    m[4] = min64(m[4], -(z + 1)), m[5] = min64(m[5], -(y + 1)), m[6] = min64(m[6], -(x + 1));
}

static void reduce_i64(MPI_Comm comm, int64_t *a, int64_t n, MPI_Op op)
{
    for (int64_t o = 0; o < n; o += 1 << 26)
        MPI_Allreduce(MPI_IN_PLACE, a + o, (int)min64(n - o, 1 << 26), MPI_INT64_T, op, comm);
}

void cp_vstats_reduce(MPI_Comm comm, cp_vstats *s)
{
    reduce_i64(comm, s->area, s->n + 1, MPI_SUM);
    reduce_i64(comm, s->mn, 7 * (s->n + 1), MPI_MIN);
}

cp_box cp_vstats_box(const cp_vstats *s, uint32_t l)
{
    const int64_t *m = s->mn + 7 * (int64_t)l;
    return (cp_box){m[1], -m[4], m[2], -m[5], m[3], -m[6]};
}

int64_t cp_box_vol(cp_box b) { return (b.z1 - b.z0) * (b.y1 - b.y0) * (b.x1 - b.x0); }

cp_box cp_box_meet(cp_box a, cp_box b)
{
    return (cp_box){max64(a.z0, b.z0), min64(a.z1, b.z1), max64(a.y0, b.y0),
                    min64(a.y1, b.y1), max64(a.x0, b.x0), min64(a.x1, b.x1)};
}

int cp_box_empty(cp_box b) { return b.z0 >= b.z1 || b.y0 >= b.y1 || b.x0 >= b.x1; }

cp_box cp_grid_bounds(const cp_grid *g, int64_t b)
{
    cp_box3 r = cp_grid_box(g, b);
    return (cp_box){r.o[0], r.o[0] + r.n[0], r.o[1], r.o[1] + r.n[1], r.o[2], r.o[2] + r.n[2]};
}

int cp_vstats_min_size(const cp_vstats *s, int64_t min_size, uint32_t *map, int64_t *kept,
                       char *err)
{
    for (int64_t l = 1; l <= s->n; l++) map[l] = !cp_post_too_small(s->area[l], min_size);
    if ((*kept = cp_renumber_ids(s->mn, 7, s->n, map)) < 0) return oom(err, "renumbering");
    return 0;
}

int cp_vstats_step_a(MPI_Comm comm, cp_vstats *s, int64_t min_size, uint32_t *map, cp_vstats *a,
                     char *err)
{
    int64_t na = s->n;
    int rc = 0;
    cp_vstats_reduce(comm, s);
    if (min_size > 0) rc = cp_vstats_min_size(s, min_size, map, &na, err);
    else
        for (int64_t l = 0; l <= s->n; l++) map[l] = (uint32_t)l;
    if (!rc) rc = cp_vstats_init(a, na, err);
    for (int64_t l = 1; !rc && l <= s->n; l++)
        if (map[l]) {
            a->area[map[l]] = s->area[l];
            memcpy(a->mn + 7 * (int64_t)map[l], s->mn + 7 * l, 7 * sizeof *s->mn);
        }
    return cp_agree(comm, rc, err);
}

int64_t cp_holding_batch(const cp_box *box, int64_t i, int64_t n, int64_t budget, cp_box *span)
{
    int64_t e = i, tot = 0;
    *span = (cp_box){INT64_MAX, 0, INT64_MAX, 0, INT64_MAX, 0};
    while (e < n && (e == i || tot + cp_box_vol(box[e]) <= budget)) {
        cp_box b = box[e++];
        tot += cp_box_vol(b);
        span->z0 = min64(span->z0, b.z0), span->z1 = max64(span->z1, b.z1);
        span->y0 = min64(span->y0, b.y0), span->y1 = max64(span->y1, b.y1);
        span->x0 = min64(span->x0, b.x0), span->x1 = max64(span->x1, b.x1);
    }
    return e;
}

int cp_holding_pass(const cp_pass *p, const cp_box *box, int64_t n)
{
    cp_outbox o = {0};
    int rc = cp_agree(p->comm, cp_outbox_init(&o, p->comm, sizeof(cp_kpix), p->err), p->err);
    for (int64_t i = 0, nb; !rc && i < n; i = nb) {
        cp_box span;
        cp_kpix *px = NULL;
        int64_t npx = 0;
        nb = cp_holding_batch(box, i, n, p->budget, &span);
        rc = p->send(p->ctx, &o, i, nb, span);
        if ((rc = cp_exchange(&o, rc, INT64_MAX, (void **)&px, &npx, p->err))) break;
        qsort(px, (size_t)npx, sizeof *px, cp_kpix_cmp);
        for (int64_t k = 0, end; !rc && k < npx; k = end) {
            for (end = k; end < npx && px[end].key == px[k].key; end++) continue;
            rc = p->each(p->ctx, px + k, end - k);
        }
        free(px);
        if (p->after) rc = p->after(p->ctx, rc);
        rc = cp_agree(p->comm, rc, p->err);
    }
    cp_outbox_free(&o);
    return rc;
}

int cp_holding_canvas(cp_box b, const cp_kpix *px, int64_t n, int64_t ny, int64_t nx,
                      uint32_t **canvas, unsigned char **state, int64_t **stack, char *err)
{
    int64_t nv = cp_box_vol(b), by = b.y1 - b.y0, bx = b.x1 - b.x0, npix = ny * nx;
    *canvas = calloc((size_t)nv, sizeof **canvas);
    *state = malloc((size_t)nv);
    *stack = malloc(sizeof **stack * (size_t)nv);
    if (!*canvas || !*state || !*stack) return oom(err, "the box of a label or group");
    for (int64_t k = 0; k < n; k++) {
        int64_t z = px[k].idx / npix, r = px[k].idx % npix;
        (*canvas)[((z - b.z0) * by + r / nx - b.y0) * bx + r % nx - b.x0] = px[k].v;
    }
    return 0;
}

int cp_holding_edges3(cp_box b, uint32_t w, const cp_kpix *px, int64_t n, int64_t ny, int64_t nx,
                      uint32_t **e, int64_t *ne, int64_t *cap, int *hole, char *err)
{
    uint32_t *cv = NULL;
    unsigned char *st = NULL;
    int64_t *stk = NULL;
    cp_box whole = {0, b.z1 - b.z0, 0, b.y1 - b.y0, 0, b.x1 - b.x0};
    int rc = cp_holding_canvas(b, px, n, ny, nx, &cv, &st, &stk, err);
    if (!rc) cp_post_hole_map(cv, whole.y1, whole.x1, 1, w, &whole, st, stk);
    for (int64_t q = 0; !rc && q < cp_box_vol(b); q++) {
        if (st[q]) continue;
        *hole = 1;
        if (cv[q] && cp_holding_push(e, ne, cap, w, cv[q])) rc = oom(err, "edges");
    }
    free(cv);
    free(st);
    free(stk);
    return rc;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int cp_holding_fill3(cp_box b, const cp_kpix *px, int64_t n, int64_t ny, int64_t nx,
                     const uint32_t *jmap, cp_edit_fn fn, void *ctx, char *err)
{
    int64_t nv = cp_box_vol(b), bz = b.z1 - b.z0, by = b.y1 - b.y0, bx = b.x1 - b.x0, nm = 0;
    uint32_t *cv = NULL, *init = malloc(sizeof *init * (size_t)nv);
    uint32_t *mem = malloc(sizeof *mem * (size_t)(n ? n : 1));
    unsigned char *st = NULL;
    int64_t *stk = NULL;
    int rc = cp_holding_canvas(b, px, n, ny, nx, &cv, &st, &stk, err);
    if (!rc && (!init || !mem)) rc = oom(err, "the box of a group of labels");
    for (int64_t k = 0; !rc && k < n; k++) /* members numbered 1..nm in label order */
        if (k == 0 || px[k].v != px[k - 1].v) mem[nm++] = px[k].v;
    for (int64_t q = 0; !rc && q < nv; q++) {
        if (cv[q]) {
            uint32_t *m = bsearch(&cv[q], mem, (size_t)nm, sizeof *mem, cmp_u32);
            cv[q] = (uint32_t)(m - mem) + 1;
        }
        init[q] = cv[q];
    }
    if (!rc) rc = cp_post_fill_and_min_size_3d(cv, bz, by, bx, -1, err);
    for (int64_t q = 0; !rc && q < nv; q++) {
        uint32_t to = cv[q] ? jmap[mem[cv[q] - 1]] : 0;
        uint32_t was = init[q] ? jmap[mem[init[q] - 1]] : 0;
        if (to != was) rc = fn(ctx, b.z0 + q / (by * bx), b.y0 + q / bx % by, b.x0 + q % bx, to);
    }
    free(cv);
    free(init);
    free(mem);
    free(st);
    free(stk);
    return rc;
}

int cp_groups_make(cp_groups *G, const cp_vstats *a, const unsigned char *sel,
                   const uint32_t *root, char *err)
{
    int64_t n = a->n;
    G->ng = 0;
    G->gidx = calloc((size_t)n + 1, sizeof *G->gidx);
    if (!G->gidx) return oom(err, "group tables");
    for (int64_t l = 1; l <= n; l++)
        if (sel[l] && !G->gidx[root[l]]) G->gidx[root[l]] = (uint32_t)++G->ng;
    G->gl = malloc(sizeof *G->gl * (size_t)(G->ng + 1));
    G->gbox = malloc(sizeof *G->gbox * (size_t)(G->ng + 1));
    if (!G->gl || !G->gbox) return oom(err, "group tables");
    for (int64_t g = 0; g <= G->ng; g++)
        G->gbox[g] = (cp_box){INT64_MAX, 0, INT64_MAX, 0, INT64_MAX, 0};
    for (int64_t l = 1; l <= n; l++) {
        uint32_t g = G->gidx[root[l]];
        if (!g || !a->area[l]) continue;
        cp_box b = cp_vstats_box(a, (uint32_t)l), *u = &G->gbox[g];
        G->gl[g - 1] = root[l];
        u->z0 = min64(u->z0, b.z0), u->z1 = max64(u->z1, b.z1);
        u->y0 = min64(u->y0, b.y0), u->y1 = max64(u->y1, b.y1);
        u->x0 = min64(u->x0, b.x0), u->x1 = max64(u->x1, b.x1);
    }
    return 0;
}

void cp_groups_free(cp_groups *G)
{
    free(G->gidx);
    free(G->gl);
    free(G->gbox);
    *G = (cp_groups){0};
}
