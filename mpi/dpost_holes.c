/* Hole filling of the per-mask steps, step (b) of CELLPOSE_ALGORITHM.md §4.8 (see
 * dpost_impl.h). Label v "holds" u when a hole of v (on the array before filling) contains a
 * pixel of u. Groups of labels linked by holding are independent of each other: a fill writes
 * only over its group's pixels and holes, and two holes that overlap belong to one group. A label
 * alone in its group with its box in one block is filled in place; every other group is filled
 * at its owner with cp_post_fill_and_min_size on a canvas of the group's box, which keeps
 * Cellpose's order and swallowing exact; the differences go back to the block owners as edits. */
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "dpost_impl.h"
#include "holding.h"
#include "post.h"

/* Records moved between ranks (memset an edit before filling: its padding travels too). */
struct edit { /* new value of a pixel; blk is set by the receiver */
    int64_t idx, blk;
    uint32_t v;
};

/* Holes of label v in rectangle box of the 2-D array a (row length stride): see
 * cp_post_hole_map. */
static void holes(const uint32_t *a, int64_t stride, cp_rect box, uint32_t v, unsigned char *state,
                  int64_t *stack)
{
    cp_box b = {0, 1, box.y0, box.y0 + box.ny, box.x0, box.x0 + box.nx};
    cp_post_hole_map(a, 1, stride, 0, v, &b, state, stack);
}

static int cmp_edit(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->blk != y->blk) return x->blk < y->blk ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Block-sized scratch of a pass over own blocks: label marks (n+1), hole states, label list,
 * flood-fill stack. */
struct scratch {
    unsigned char *mark, *state;
    uint32_t *list;
    int64_t *stack;
};

static void scratch_free(struct scratch *w)
{
    free(w->mark);
    free(w->state);
    free(w->list);
    free(w->stack);
}

static int scratch_init(struct run *r, const struct stats *s, struct scratch *w, const char *what)
{
    w->mark = calloc((size_t)s->n + 1, 1);
    w->state = malloc((size_t)r->bmax);
    w->list = malloc(sizeof(uint32_t) * (size_t)r->bmax);
    w->stack = malloc(sizeof(int64_t) * (size_t)r->bmax);
    return w->mark && w->state && w->list && w->stack ? 0 : oom(r->err, what);
}

/* Collective (cp_exchange): the cp_kpix sent to this rank, sorted by (key, v, idx). */
static int gather_kpix(struct run *r, int rc, cp_kpix **px, int64_t *npx)
{
    if ((rc = cp_exchange(&r->kpx, rc, INT64_MAX, (void **)px, npx, r->err)) == 0)
        qsort(*px, (size_t)*npx, sizeof **px, cp_kpix_cmp);
    return rc;
}

/* The array after step (a) of block b, map["qc"], into r->blk. */
static int load_mapped(struct run *r, int64_t b, const uint32_t *map, cp_rect *br)
{
    int rc = load(r, CP_SLOT_QC, b, r->blk, br);
    for (int64_t p = 0; !rc && p < br->ny * br->nx; p++) r->blk[p] = map[r->blk[p]];
    return rc;
}

/* Labels in block array a whose box lies in the block, each once, in increasing order, into
 * list; mark (n+1 zeros) is left zeroed. Returns the count. */
static int64_t local_labels(const struct run *r, const struct stats *s, const uint32_t *a,
                            int64_t n, unsigned char *mark, uint32_t *list)
{
    int64_t k = 0;
    for (int64_t p = 0; p < n; p++)
        if (a[p] && !mark[a[p]] && !crossing(r, s, a[p])) mark[a[p]] = 1, list[k++] = a[p];
    for (int64_t i = 0; i < k; i++) mark[list[i]] = 0;
    return k;
}

/* The "holds" edges (v, u) of the labels decided here: local labels of own blocks on the block,
 * crossing labels at their owner from the nonzero pixels of their box sent by every rank.
 * xb/xl: per own block (CSR), the crossing labels whose box touches it. Fills *e (pairs). */
static int find_edges(struct run *r, const struct stats *s, const uint32_t *map,
                      const int64_t *xb, const uint32_t *xl, uint32_t **e, int64_t *ne,
                      int64_t *cap)
{
    struct scratch w;
    int rc = scratch_init(r, s, &w, "hole search of a block");
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load_mapped(r, b, map, &br)) != 0) break;
        int64_t k = local_labels(r, s, r->blk, br.ny * br.nx, w.mark, w.list);
        for (int64_t i = 0; !rc && i < k; i++) {
            uint32_t v = w.list[i];
            cp_rect bx = label_box(s, v);
            bx.y0 -= br.y0, bx.x0 -= br.x0;
            holes(r->blk, br.nx, bx, v, w.state, w.stack);
            for (int64_t q = 0; !rc && q < bx.ny * bx.nx; q++) {
                uint32_t u = r->blk[(bx.y0 + q / bx.nx) * br.nx + bx.x0 + q % bx.nx];
                if (w.state[q] == 0 && u && cp_holding_push(e, ne, cap, v, u)) rc = oom(r->err, "edges");
            }
        }
        for (int64_t j = xb[b - r->b0]; !rc && j < xb[b - r->b0 + 1]; j++) {
            cp_rect bx = label_box(s, xl[j]);
            int64_t y0 = max64(bx.y0, br.y0), y1 = min64(bx.y0 + bx.ny, br.y0 + br.ny);
            int64_t x0 = max64(bx.x0, br.x0), x1 = min64(bx.x0 + bx.nx, br.x0 + br.nx);
            int dst = label_owner(r, s, xl[j]);
            for (int64_t y = y0; !rc && y < y1; y++)
                for (int64_t x = x0; !rc && x < x1; x++) {
                    uint32_t u = r->blk[(y - br.y0) * br.nx + x - br.x0];
                    cp_kpix p = {y * r->g->Lx + x, xl[j], u};
                    if (u) rc = send(r, &r->kpx, dst, &p, "box pixels in transit");
                }
        }
    }
    scratch_free(&w);
    cp_kpix *px;
    int64_t npx;
    if ((rc = gather_kpix(r, rc, &px, &npx)) != 0) return rc;
    for (int64_t i = 0; !rc && i < npx;) {
        uint32_t v = px[i].key;
        int64_t e1 = i, Lx = r->g->Lx;
        while (e1 < npx && px[e1].key == v) e1++;
        cp_rect bx = label_box(s, v);
        int64_t n = bx.ny * bx.nx;
        uint32_t *canvas = calloc((size_t)n, sizeof *canvas);
        unsigned char *st = malloc((size_t)n);
        int64_t *stk = malloc(sizeof(int64_t) * (size_t)n);
        if (!canvas || !st || !stk) rc = oom(r->err, "the box of a crossing label");
        for (int64_t k = i; !rc && k < e1; k++)
            canvas[(px[k].idx / Lx - bx.y0) * bx.nx + px[k].idx % Lx - bx.x0] = px[k].v;
        if (!rc) holes(canvas, bx.nx, (cp_rect){0, 0, bx.ny, bx.nx}, v, st, stk);
        for (int64_t q = 0; !rc && q < n; q++)
            if (st[q] == 0 && canvas[q] && cp_holding_push(e, ne, cap, v, canvas[q]))
                rc = oom(r->err, "edges");
        free(canvas);
        free(st);
        free(stk);
        i = e1;
    }
    free(px);
    return cp_agree(r->d->comm, rc, r->err);
}

/* Collective: every rank's edges to all; root[v] (n+1) = smallest label of v's group, single[v]
 * = 1 when v is alone in its group and its box lies in one block (filled in its block). */
static int make_groups(struct run *r, const struct stats *s, uint32_t *e, int64_t ne,
                       uint32_t *root, unsigned char *single)
{
    int rc = cp_holding_groups(r->d->comm, e, ne, root, s->n, r->err);
    if (rc) return rc;
    for (int64_t v = 1; v <= s->n; v++) single[v] = 1;
    for (int64_t v = 1; v <= s->n; v++)
        if (root[v] != v) single[v] = single[root[v]] = 0;
    for (int64_t v = 1; v <= s->n; v++)
        if (s->area[v] && crossing(r, s, (uint32_t)v)) single[v] = 0;
    return 0;
}

/* Fills the groups owned here (pixels gathered, sorted by (root, label, index)) on a canvas of
 * the group's box with the whole-plane routine, and sends the changed pixels to their blocks. */
static int fill_groups(struct run *r, const struct stats *s, const uint32_t *jmap,
                       const cp_kpix *px, int64_t npx)
{
    int64_t Lx = r->g->Lx;
    char *err = r->err;
    for (int64_t i = 0; i < npx;) {
        int64_t e = i, nm = 0;
        while (e < npx && px[e].key == px[i].key) e++;
        int64_t y0 = INT64_MAX, x0 = INT64_MAX, y1 = 0, x1 = 0;
        for (int64_t k = i; k < e; k++)
            if (k == i || px[k].v != px[k - 1].v) {
                cp_rect bx = label_box(s, px[k].v);
                y0 = min64(y0, bx.y0), x0 = min64(x0, bx.x0);
                y1 = max64(y1, bx.y0 + bx.ny), x1 = max64(x1, bx.x0 + bx.nx);
            }
        int64_t h = y1 - y0, w = x1 - x0;
        uint32_t *canvas = calloc((size_t)(h * w), sizeof *canvas);
        uint32_t *init = calloc((size_t)(h * w), sizeof *init);
        uint32_t *mem = malloc(sizeof(uint32_t) * (size_t)(e - i));
        int rc = canvas && init && mem ? 0 : oom(err, "the box of a group of labels");
        for (int64_t k = i; !rc && k < e; k++) {
            if (k == i || px[k].v != px[k - 1].v) mem[nm++] = px[k].v;
            init[(px[k].idx / Lx - y0) * w + px[k].idx % Lx - x0] = (uint32_t)nm;
        }
        if (!rc) memcpy(canvas, init, sizeof(uint32_t) * (size_t)(h * w));
        if (!rc) rc = cp_post_fill_and_min_size(canvas, 1, h, w, -1, err);
        for (int64_t q = 0; !rc && q < h * w; q++) {
            if (!canvas[q]) continue;
            uint32_t nv = jmap[mem[canvas[q] - 1]], ov = init[q] ? mem[init[q] - 1] : 0;
            if (nv == ov) continue;
            struct edit ed;
            memset(&ed, 0, sizeof ed);
            ed.idx = (y0 + q / w) * Lx + x0 + q % w, ed.v = nv;
            int dst = cp_grid_owner(r->g, cp_grid_block_at(r->g, y0 + q / w, x0 + q % w));
            rc = send(r, &r->ed, dst, &ed, "edits in transit");
        }
        free(canvas);
        free(init);
        free(mem);
        if (rc) return rc;
        i = e;
    }
    return 0;
}

/* Step (b) of §4.8 over the blocks: single labels filled in place, the others gathered at their
 * group's owner, filled there, edits applied; the result is stored as "fh" and its area and first
 * index per label are reduced into s2 (allocated here, s->n labels). */
static int fill_stage(struct run *r, const struct stats *s, const uint32_t *map,
                      const uint32_t *root, const unsigned char *single, const uint32_t *jmap,
                      struct stats *s2)
{
    struct scratch w;
    int rc = scratch_init(r, s, &w, "hole filling of a block");
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load_mapped(r, b, map, &br)) != 0) break;
        int64_t n = br.ny * br.nx, k = local_labels(r, s, r->blk, n, w.mark, w.list);
        memcpy(r->out, r->blk, sizeof(uint32_t) * (size_t)n);
        for (int64_t i = 0; i < k; i++) {
            uint32_t v = w.list[i];
            if (!single[v]) continue;
            cp_rect bx = label_box(s, v);
            bx.y0 -= br.y0, bx.x0 -= br.x0;
            holes(r->blk, br.nx, bx, v, w.state, w.stack);
            for (int64_t q = 0; q < bx.ny * bx.nx; q++)
                if (w.state[q] != 2)
                    r->out[(bx.y0 + q / bx.nx) * br.nx + bx.x0 + q % bx.nx] = jmap[v];
        }
        for (int64_t p = 0; !rc && p < n; p++) {
            uint32_t v = r->blk[p];
            if (!v || single[v]) continue;
            cp_kpix px = {(br.y0 + p / br.nx) * r->g->Lx + br.x0 + p % br.nx, root[v], v};
            rc = send(r, &r->kpx, label_owner(r, s, root[v]), &px, "group pixels in transit");
        }
        if (!rc) rc = store(r, CP_SLOT_FH, b, r->out, br);
    }
    scratch_free(&w);
    cp_kpix *px;
    int64_t npx;
    if ((rc = gather_kpix(r, rc, &px, &npx)) != 0) return rc;
    rc = fill_groups(r, s, jmap, px, npx);
    free(px);
    struct edit *ed;
    int64_t ned;
    if ((rc = cp_exchange(&r->ed, rc, INT64_MAX, (void **)&ed, &ned, r->err)) != 0) return rc;
    for (int64_t i = 0; i < ned; i++)
        ed[i].blk = cp_grid_block_at(r->g, ed[i].idx / r->g->Lx, ed[i].idx % r->g->Lx);
    qsort(ed, (size_t)ned, sizeof *ed, cmp_edit);
    rc = cp_dpost_stats_init(s2, s->n, r->err);
    for (int64_t b = r->b0, i = 0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load(r, CP_SLOT_FH, b, r->out, &br)) != 0) break;
        for (; i < ned && ed[i].blk == b; i++)
            r->out[(ed[i].idx / r->g->Lx - br.y0) * br.nx + ed[i].idx % r->g->Lx - br.x0] = ed[i].v;
        cp_dpost_stats_add(s2, r->out, br, r->g->Lx);
        rc = store(r, CP_SLOT_FH, b, r->out, br);
    }
    free(ed);
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) return rc;
    cp_dpost_stats_reduce(r->d->comm, s2);
    return 0;
}

/* Per own block, the crossing labels whose box touches it (CSR: xb[b-b0 .. b-b0+1) into xl). */
static int crossing_lists(const struct run *r, const struct stats *s, int64_t **xb, uint32_t **xl)
{
    int64_t nb = r->b1 - r->b0, nbx = r->g->nbx, B = r->g->B;
    *xb = calloc((size_t)nb + 2, sizeof(int64_t));
    *xl = NULL;
    if (!*xb) return oom(r->err, "crossing lists");
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t v = 1; v <= s->n; v++) {
            if (!s->area[v] || !crossing(r, s, (uint32_t)v)) continue;
            cp_rect bx = label_box(s, (uint32_t)v);
            for (int64_t by = bx.y0 / B; by <= (bx.y0 + bx.ny - 1) / B; by++)
                for (int64_t bxx = bx.x0 / B; bxx <= (bx.x0 + bx.nx - 1) / B; bxx++) {
                    int64_t b = by * nbx + bxx;
                    if (b < r->b0 || b >= r->b1) continue;
                    if (pass == 0) (*xb)[b - r->b0 + 2]++;
                    else (*xl)[(*xb)[b - r->b0 + 1]++] = (uint32_t)v;
                }
        }
        if (pass == 0) {
            for (int64_t i = 2; i <= nb + 1; i++) (*xb)[i] += (*xb)[i - 1];
            *xl = malloc(sizeof(uint32_t) * (size_t)((*xb)[nb + 1] + 1));
            if (!*xl) return oom(r->err, "crossing lists");
        }
    }
    return 0;
}

int cp_dpost_fill_holes(struct run *r, const struct stats *s, const uint32_t *map,
                        struct stats *s2)
{
    int64_t n = s->n;
    uint32_t *root = malloc(sizeof(uint32_t) * ((size_t)n + 1));
    uint32_t *jmap = malloc(sizeof(uint32_t) * ((size_t)n + 1));
    unsigned char *single = malloc((size_t)n + 1);
    uint32_t *xl = NULL, *e = NULL;
    int64_t *xb = NULL, ne = 0, cap = 0;
    int rc = root && jmap && single ? 0 : oom(r->err, "group tables");
    if (!rc) rc = cp_outbox_init(&r->kpx, r->d->comm, sizeof(cp_kpix), r->err);
    if (!rc) rc = cp_outbox_init(&r->ed, r->d->comm, sizeof(struct edit), r->err);
    if (!rc) { /* Cellpose's counter j: labels with a box, in label order */
        uint32_t j = 0;
        jmap[0] = 0;
        for (int64_t v = 1; v <= n; v++) jmap[v] = s->area[v] ? ++j : 0;
        rc = crossing_lists(r, s, &xb, &xl);
    }
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) goto out;
    if ((rc = find_edges(r, s, map, xb, xl, &e, &ne, &cap)) != 0) goto out;
    if ((rc = make_groups(r, s, e, ne, root, single)) != 0) goto out;
    rc = fill_stage(r, s, map, root, single, jmap, s2);
out:
    free(root);
    free(jmap);
    free(single);
    free(xb);
    free(xl);
    free(e);
    return rc;
}
