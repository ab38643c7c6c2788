/* The 3-D network phase over owner blocks, each tile evaluated once per wave (see dnet3.h). */
#include "dnet3.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agree.h"
#include "cp_err.h"
#include "progress.h"
#include "run_net.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* A window of the wave: its owner, its index in the owner's list, its boxes, and per pass its
 * planes, its canvas rect (image rect + padding) and the tiles touching it (increasing). */
typedef struct wwin {
    int rank;
    int64_t j;
    cp_net3d_boxes bx;
    int64_t p0, pn, cw[4], nk, *ks;
    int64_t at; /* own windows: where its passes start in the scratch file (floats) */
} wwin;

/* The run: the call, every rank's windows and boxes, the current wave and pass. */
typedef struct run3 {
    MPI_Comm comm;
    int rank, nranks, nout;
    const cp_model *m;
    cp_net3d_scaled src;
    const int64_t *L;
    const cp_net3d_params *p;
    int64_t wave;           /* windows per rank per wave */
    char path[4096];        /* this rank's scratch file */
    int fd;                 /* open during a wave, else -1 */
    int64_t Ln[3];
    int64_t *cnt, *first;   /* windows per rank, and where each rank's start in all */
    cp_net3d_boxes *all;    /* every rank's windows, rank by rank */
    int64_t *load;          /* tile runs per rank so far (the same on every rank) */
    int64_t nw;             /* windows of the wave */
    wwin *w;
    /* the pass */
    int pass;
    cp_view v;
    cp_tile_grid g;
    int64_t by, bx, nt, group;
    cp_progress pr;
    int64_t mine_total;     /* counting run: this rank's tile runs */
    /* the steps' buffers, grown as needed and kept over the run (no allocation per step) */
    struct { void *p; size_t cap; } slab, its, img, in, out, sbuf, rbuf, canvas, wt;
} run3;

/* b with room for n bytes (grown, never shrunk); NULL when out of memory. */
#define ROOM(b, n) room(&(b).p, &(b).cap, (size_t)(n))
static void *room(void **p, size_t *cap, size_t n)
{
    if (n > *cap) {
        void *q = realloc(*p, n);
        if (!q) return NULL;
        *p = q, *cap = n;
    }
    return *p;
}

/* One step's plan: items it = (plane - i0) * nt + k; the windows needing each (CSR, increasing),
 * the rank running it (-1: none), and per (item, window) pair the offset of its part in the send
 * buffer (pairs run here) and in the receive buffer (pairs of own windows). */
typedef struct step {
    int64_t i0, ni, nitems;
    int64_t *start, *who, *soff, *roff;
    int *eval;
    int *scount, *sdisp, *rcount, *rdisp;
    int64_t nsend, nrecv;
} step;

static void step_free(step *s)
{
    free(s->start), free(s->who), free(s->soff), free(s->roff), free(s->eval);
    free(s->scount), free(s->sdisp), free(s->rcount), free(s->rdisp);
    memset(s, 0, sizeof *s);
}

/* Floats of tile k's part for window q (its output over the window's canvas rect). */
static int64_t part_floats(const run3 *r, int64_t k, const wwin *q)
{
    int64_t y0, y1, x0, x1;
    if (!cp_tiles_clip(&r->g, k, q->cw[0], q->cw[1], q->cw[2], q->cw[3], &y0, &y1, &x0, &x1))
        return 0;
    return r->nout * (y1 - y0) * (x1 - x0);
}

/* Whether rank o comes before rank c to run an item: fewer runs in the step (sl), then fewer
 * overall, then the lower rank. */
static int before(const run3 *r, const int64_t *sl, int o, int c)
{
    if (sl[o] != sl[c]) return sl[o] < sl[c];
    return r->load[o] != r->load[c] ? r->load[o] < r->load[c] : o < c;
}

/* Plans planes [i0, i0+ni) of the pass: who needs what, who runs it, where the parts go. */
static int plan_step(run3 *r, int64_t i0, int64_t ni, step *s, char *err)
{
    memset(s, 0, sizeof *s);
    s->i0 = i0, s->ni = ni, s->nitems = ni * r->nt;
    int N = r->nranks;
    s->start = calloc((size_t)s->nitems + 1, sizeof *s->start);
    s->eval = malloc(sizeof *s->eval * (size_t)s->nitems);
    s->scount = calloc((size_t)N, sizeof(int)), s->sdisp = calloc((size_t)N, sizeof(int));
    s->rcount = calloc((size_t)N, sizeof(int)), s->rdisp = calloc((size_t)N, sizeof(int));
    if (!s->start || !s->eval || !s->scount || !s->sdisp || !s->rcount || !s->rdisp)
        return cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a step's plan");
    /* the windows needing each item (CSR): counted, then filled in increasing window order */
    int64_t *fill = NULL, np = 0;
    for (int round = 0; round < 2; round++) {
        for (int64_t q = 0; q < r->nw; q++) {
            const wwin *w = &r->w[q];
            int64_t lo = max64(w->p0, i0), hi = min64(w->p0 + w->pn, i0 + ni);
            for (int64_t i = lo; i < hi; i++)
                for (int64_t t = 0; t < w->nk; t++) {
                    int64_t it = (i - i0) * r->nt + w->ks[t];
                    if (round) s->who[fill[it]++] = q;
                    else s->start[it + 1]++;
                }
        }
        if (round) break;
        for (int64_t it = 0; it < s->nitems; it++) s->start[it + 1] += s->start[it];
        np = s->start[s->nitems];
        s->who = malloc(sizeof *s->who * (size_t)(np + 1));
        s->soff = malloc(sizeof *s->soff * (size_t)(np + 1));
        s->roff = malloc(sizeof *s->roff * (size_t)(np + 1));
        fill = malloc(sizeof *fill * (size_t)(s->nitems + 1));
        if (!s->who || !s->soff || !s->roff || !fill) {
            free(fill);
            return cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a step's plan");
        }
        memcpy(fill, s->start, sizeof *fill * (size_t)s->nitems);
    }
    free(fill);
    /* who runs each item: the steps go in lockstep, so the runs of a step are spread over all
     * ranks. The needing rank with the fewest runs in this step (then overall, then the lowest)
     * runs it, unless some rank has fewer runs in this step: then the next such rank does, and
     * sends the parts (a step's planes may lie in one rank's blocks only). */
    int64_t *sl = calloc((size_t)N, sizeof *sl), least = 0, nleast = N;
    if (!sl) return cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a step's plan");
    int idle = 0; /* where to look next for a rank with `least` runs in this step */
    for (int64_t it = 0; it < s->nitems; it++) {
        int c = -1;
        for (int64_t e = s->start[it]; e < s->start[it + 1]; e++) {
            int o = r->w[s->who[e]].rank;
            if (c < 0 || before(r, sl, o, c)) c = o;
        }
        if (c >= 0 && sl[c] > least) {
            while (sl[idle] != least) idle = (idle + 1) % N;
            c = idle;
        }
        s->eval[it] = c;
        if (c < 0) continue;
        sl[c]++, r->load[c]++;
        if (sl[c] - 1 == least && --nleast == 0) { /* every rank has more: the next level */
            least++;
            for (int o = 0; o < N; o++) nleast += sl[o] == least;
        }
    }
    free(sl);
    /* the parts: to rank d in (item, window) order from each runner; the same walk gives both
     * ends their offsets */
    int64_t *spos = calloc((size_t)N, sizeof *spos), *rpos = calloc((size_t)N, sizeof *rpos);
    if (!spos || !rpos) {
        free(spos), free(rpos);
        return cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a step's plan");
    }
    for (int64_t e = 0; e < np; e++) s->soff[e] = s->roff[e] = -1;
    for (int pass = 0; pass < 2; pass++) { /* sizes, then offsets */
        for (int64_t it = 0; it < s->nitems; it++) {
            int ev = s->eval[it];
            for (int64_t e = s->start[it]; ev >= 0 && e < s->start[it + 1]; e++) {
                const wwin *w = &r->w[s->who[e]];
                int64_t f = part_floats(r, it % r->nt, w);
                if (ev == r->rank) {
                    if (pass) s->soff[e] = s->sdisp[w->rank] + spos[w->rank];
                    spos[w->rank] += f;
                }
                if (w->rank == r->rank) {
                    if (pass) s->roff[e] = s->rdisp[ev] + rpos[ev];
                    rpos[ev] += f;
                }
            }
        }
        if (pass) break;
        int64_t so = 0, ro = 0;
        for (int d = 0; d < N; d++) {
            if (spos[d] > INT_MAX || rpos[d] > INT_MAX || so > INT_MAX || ro > INT_MAX) {
                free(spos), free(rpos);
                return cp_errf(err, CP_ENOMEM, "network 3-D: a step's parts exceed an MPI count "
                               "(use smaller blocks)");
            }
            s->scount[d] = (int)spos[d], s->sdisp[d] = (int)so;
            s->rcount[d] = (int)rpos[d], s->rdisp[d] = (int)ro;
            so += spos[d], ro += rpos[d], spos[d] = rpos[d] = 0;
        }
        s->nsend = so, s->nrecv = ro;
    }
    free(spos), free(rpos);
    return 0;
}

/* The input of the items run here, tile by tile into in (2, ty, tx) each: one read of the slab of
 * their planes over the union of their image rects, then each tile's canvas window zero-padded
 * and extracted (cp_tiles_extract, flips included). */
typedef struct slab {
    cp_box3 box;    /* at the network scale */
    cp_view v;      /* the pass's view of the slab */
    int64_t i0, r[4];
    float *x;       /* (box.n, 2) */
} slab;

/* Tile k's image rect (rows, columns of the image it reads); 0 if it reads none. */
static int tile_rect(const run3 *r, int64_t k, int64_t rect[4])
{
    const cp_tile_grid *g = &r->g;
    int64_t ys = g->ystart[k / g->nx], xs = g->xstart[k % g->nx];
    int64_t y0 = ys - r->by < 0 ? 0 : ys - r->by, x0 = xs - r->bx < 0 ? 0 : xs - r->bx;
    int64_t y1 = ys + g->ty - r->by, x1 = xs + g->tx - r->bx;
    y1 = y1 < r->v.rows ? y1 : r->v.rows, x1 = x1 < r->v.cols ? x1 : r->v.cols;
    rect[0] = y0, rect[1] = x0, rect[2] = y1 - y0, rect[3] = x1 - x0;
    return rect[2] > 0 && rect[3] > 0;
}

static int read_slab(run3 *r, const step *s, slab *sl, char *err)
{
    int64_t lo = INT64_MAX, hi = -1, y0 = INT64_MAX, x0 = INT64_MAX, y1 = -1, x1 = -1;
    for (int64_t it = 0; it < s->nitems; it++) {
        int64_t rect[4];
        if (s->eval[it] != r->rank || !tile_rect(r, it % r->nt, rect)) continue;
        int64_t i = s->i0 + it / r->nt;
        lo = i < lo ? i : lo, hi = i > hi ? i : hi;
        y0 = rect[0] < y0 ? rect[0] : y0, x0 = rect[1] < x0 ? rect[1] : x0;
        y1 = rect[0] + rect[2] > y1 ? rect[0] + rect[2] : y1;
        x1 = rect[1] + rect[3] > x1 ? rect[1] + rect[3] : x1;
    }
    memset(sl, 0, sizeof *sl);
    if (hi < 0) return 0;
    sl->i0 = lo, sl->r[0] = y0, sl->r[1] = x0, sl->r[2] = y1 - y0, sl->r[3] = x1 - x0;
    sl->box = cp_view_box(r->pass, lo, hi - lo + 1, sl->r);
    sl->v = cp_view_of(r->pass, sl->box.n[0], sl->box.n[1], sl->box.n[2]);
    sl->x = ROOM(r->slab, sizeof(float) * (size_t)(2 * cp_box3_voxels(sl->box)));
    if (!sl->x) return cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a step's input");
    return cp_net3d_read_scaled(&r->src, sl->box, sl->x, err);
}

/* Tile k of plane i into in (2, ty, tx), its canvas window img (2, ty, tx) as scratch. */
static void tile_input(const run3 *r, const slab *sl, int64_t i, int64_t k, float *img, float *in)
{
    const cp_tile_grid *g = &r->g;
    int64_t ys = g->ystart[k / g->nx], xs = g->xstart[k % g->nx];
    int64_t wny = ys + g->ty < g->Ly ? g->ty : g->Ly - ys, wnx = xs + g->tx < g->Lx ? g->tx
                                                                                  : g->Lx - xs;
    int64_t rect[4];
    memset(img, 0, sizeof(float) * (size_t)(2 * wny * wnx));
    tile_rect(r, k, rect);
    for (int64_t y = 0; y < rect[2]; y++)
        for (int64_t x = 0; x < rect[3]; x++) {
            const float *v = sl->x + 2 * ((i - sl->i0) * sl->v.plane_st +
                                          (rect[0] + y - sl->r[0]) * sl->v.row_st +
                                          (rect[1] + x - sl->r[1]) * sl->v.col_st);
            int64_t o = (rect[0] + y + r->by - ys) * wnx + rect[1] + x + r->bx - xs;
            img[o] = v[0], img[wny * wnx + o] = v[1];
        }
    cp_tiles_extract(g, k, img, ys, xs, wny, wnx, 2, in);
}

/* Runs this rank's items of the step, batch by batch, cropping each output to its parts in sbuf. */
static int run_items(run3 *r, const step *s, float *sbuf, char *err)
{
    slab sl;
    int rc = read_slab(r, s, &sl, err);
    const cp_tile_grid *g = &r->g;
    int64_t tsz = g->ty * g->tx, batch = r->p->batch_size;
    int64_t *its = ROOM(r->its, sizeof *its * (size_t)batch);
    float *img = ROOM(r->img, sizeof(float) * (size_t)(2 * tsz));
    float *in = ROOM(r->in, sizeof(float) * (size_t)(batch * 2 * tsz));
    float *out = ROOM(r->out, sizeof(float) * (size_t)(batch * r->nout * tsz));
    if (!rc && !(its && img && in && out))
        rc = cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a batch of tiles");
    for (int64_t it = 0, nb = 0; !rc && it <= s->nitems; it++) {
        if (it < s->nitems && s->eval[it] == r->rank) {
            tile_input(r, &sl, s->i0 + it / r->nt, it % r->nt, img, in + nb * 2 * tsz);
            its[nb++] = it;
        }
        if (nb == batch || (it == s->nitems && nb > 0)) {
            rc = cp_net_forward(r->m, in, (int)nb, (int)g->ty, (int)g->tx, out, NULL, err);
            for (int64_t b = 0; !rc && b < nb; b++) {
                int64_t k = its[b] % r->nt;
                float *o = out + b * r->nout * tsz;
                if (g->augment) cp_tiles_unflip(g, k, o, r->nout);
                for (int64_t e = s->start[its[b]]; e < s->start[its[b] + 1]; e++) {
                    const wwin *w = &r->w[s->who[e]];
                    cp_tiles_crop(g, k, o, r->nout, w->cw[0], w->cw[1], w->cw[2], w->cw[3],
                                  sbuf + s->soff[e]);
                }
            }
            cp_progress_add(&r->pr, nb);
            nb = 0;
        }
    }
    return rc;
}

/* n floats of the scratch file at float offset at, all of them: written from v (write) or read
 * into it. */
static int scratch_io(const run3 *r, int write, float *v, int64_t n, int64_t at, char *err)
{
    char *b = (char *)v;
    size_t left = sizeof(float) * (size_t)n;
    off_t off = (off_t)at * (off_t)sizeof(float);
    while (left > 0) {
        ssize_t k = write ? pwrite(r->fd, b, left, off) : pread(r->fd, b, left, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return cp_errf(err, CP_EIO, "%s: cannot %s the network's scratch: %s", r->path,
                           write ? "write" : "read", k < 0 ? strerror(errno) : "end of file");
        b += k, off += k, left -= (size_t)k;
    }
    return 0;
}

/* The pass's image of plane i of window w: (3, rows, cols) at this offset of the scratch. */
static int64_t image_at(const run3 *r, const wwin *w, int64_t i)
{
    return w->at + r->pass * 3 * cp_box3_voxels(w->bx.a) + (i - w->p0) * 3 * w->cw[2] * w->cw[3];
}

/* Own window q's planes of the step: its parts blended in increasing tile index, plane by plane
 * (on the canvas c, weights wt, scratch of the step's largest own rect), each plane's image
 * (dY, dX, cellprob of the pass's view) written to the scratch. */
static int blend(const run3 *r, const step *s, const float *rbuf, int64_t q, float *c, double *wt,
                 char *err)
{
    const wwin *w = &r->w[q];
    int64_t npix = w->cw[2] * w->cw[3];
    int64_t lo = max64(w->p0, s->i0), hi = min64(w->p0 + w->pn, s->i0 + s->ni);
    int rc = 0;
    for (int64_t i = lo; !rc && i < hi; i++) {
        memset(c, 0, sizeof(float) * (size_t)(r->nout * npix));
        memset(wt, 0, sizeof(double) * (size_t)npix);
        for (int64_t t = 0; t < w->nk; t++) {
            int64_t it = (i - s->i0) * r->nt + w->ks[t], e = s->start[it];
            while (s->who[e] != q) e++;
            cp_tiles_accumulate_part(&r->g, w->ks[t], rbuf + s->roff[e], r->nout, c, wt,
                                     w->cw[0], w->cw[1], w->cw[2], w->cw[3]);
        }
        cp_tiles_finish(c, wt, r->nout, npix);
        rc = scratch_io(r, 1, c, 3 * npix, image_at(r, w, i), err);
    }
    return rc;
}

/* One step: plan, run, exchange, blend (counting: plan and count this rank's runs only). */
static int do_step(run3 *r, int64_t i0, int64_t ni, int counting,
                   const volatile sig_atomic_t *stop, char *err)
{
    step s;
    int rc = plan_step(r, i0, ni, &s, err);
    if (counting) {
        for (int64_t it = 0; !rc && it < s.nitems; it++) r->mine_total += s.eval[it] == r->rank;
        step_free(&s);
        return rc;
    }
    int64_t npix = 0; /* the largest own canvas rect */
    for (int64_t q = 0; q < r->nw; q++)
        if (r->w[q].rank == r->rank) npix = max64(npix, r->w[q].cw[2] * r->w[q].cw[3]);
    float *sbuf = rc ? NULL : ROOM(r->sbuf, sizeof(float) * (size_t)(s.nsend + 1));
    float *rbuf = rc ? NULL : ROOM(r->rbuf, sizeof(float) * (size_t)(s.nrecv + 1));
    float *c = rc ? NULL : ROOM(r->canvas, sizeof(float) * (size_t)(r->nout * npix + 1));
    double *wt = rc ? NULL : ROOM(r->wt, sizeof(double) * (size_t)(npix + 1));
    if (!rc && !(sbuf && rbuf && c && wt))
        rc = cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a step's parts");
    if (!rc) rc = run_items(r, &s, sbuf, err);
    if (!rc && stop && *stop)
        rc = cp_errf(err, CP_EINTR, "stopped by a signal in the network phase");
    rc = cp_agree(r->comm, rc, err); /* every rank past here has the same status */
    if (!rc)
        MPI_Alltoallv(sbuf, s.scount, s.sdisp, MPI_FLOAT, rbuf, s.rcount, s.rdisp, MPI_FLOAT,
                      r->comm);
    if (!rc) {
        for (int64_t q = 0; !rc && q < r->nw; q++)
            if (r->w[q].rank == r->rank) rc = blend(r, &s, rbuf, q, c, wt, err);
        rc = cp_agree(r->comm, rc, err);
    }
    step_free(&s);
    return rc;
}

/* One pass over the wave: its grid, each window's planes, rect and tiles, then the steps. */
static int do_pass(run3 *r, int pass, int counting, const volatile sig_atomic_t *stop, char *err)
{
    r->pass = pass;
    r->v = cp_view_of(pass, r->Ln[0], r->Ln[1], r->Ln[2]);
    memset(&r->g, 0, sizeof r->g);
    int rc = cp_net_image_grid(r->v.rows, r->v.cols, CP_NET3D_BSIZE, r->p->tile_overlap,
                               r->p->augment, &r->g, &r->by, &r->bx, err);
    r->nt = r->g.ny * r->g.nx;
    r->group = r->nt < r->p->batch_size ? r->p->batch_size / r->nt : 1; /* as cp_net3d_pass_box */
    int64_t lo = INT64_MAX, hi = 0;
    for (int64_t q = 0; !rc && q < r->nw; q++) {
        wwin *w = &r->w[q];
        int64_t rect[4];
        cp_view_rect(pass, w->bx.a, &w->p0, &w->pn, rect);
        w->cw[0] = rect[0] + r->by, w->cw[1] = rect[1] + r->bx, w->cw[2] = rect[2];
        w->cw[3] = rect[3];
        w->nk = cp_tiles_touching(&r->g, w->cw[0], w->cw[1], w->cw[2], w->cw[3], NULL);
        free(w->ks);
        w->ks = malloc(sizeof *w->ks * (size_t)(w->nk > 0 ? w->nk : 1));
        if (!w->ks) rc = cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a tile list");
        else cp_tiles_touching(&r->g, w->cw[0], w->cw[1], w->cw[2], w->cw[3], w->ks);
        lo = min64(lo, w->p0), hi = max64(hi, w->p0 + w->pn);
    }
    if (!counting) rc = cp_agree(r->comm, rc, err); /* the steps go in lockstep */
    for (int64_t i0 = lo; !rc && i0 < hi; i0 += r->group)
        rc = do_step(r, i0, hi - i0 < r->group ? hi - i0 : r->group, counting, stop, err);
    cp_tiles_free(&r->g);
    return rc;
}

/* Rank o's windows in wave t: its t-th group of r->wave, from the end on odd ranks.
 * Returns the count; *j0 the first index, *dir +1 or -1. */
static int64_t wave_share(const run3 *r, int o, int64_t t, int64_t *j0, int64_t *dir)
{
    int64_t n = r->cnt[o], a = t * r->wave;
    int64_t k = n - a < r->wave ? n - a : r->wave;
    if (k <= 0) return 0;
    *dir = o % 2 ? -1 : 1;
    *j0 = o % 2 ? n - 1 - a : a;
    return k;
}

static void wave_free(run3 *r)
{
    for (int64_t q = 0; q < r->nw; q++) free(r->w[q].ks);
    free(r->w);
    r->w = NULL, r->nw = 0;
}

/* The windows of wave t, rank by rank. */
static int wave_init(run3 *r, int64_t t, char *err)
{
    wave_free(r);
    int64_t n = 0, j0 = 0, dir = 1;
    for (int o = 0; o < r->nranks; o++) n += wave_share(r, o, t, &j0, &dir);
    r->w = calloc((size_t)(n > 0 ? n : 1), sizeof *r->w);
    if (!r->w) return cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a wave");
    for (int o = 0; o < r->nranks; o++) {
        int64_t k = wave_share(r, o, t, &j0, &dir);
        for (int64_t i = 0; i < k; i++, r->nw++) {
            wwin *w = &r->w[r->nw];
            w->rank = o, w->j = j0 + dir * i, w->bx = r->all[r->first[o] + w->j];
        }
    }
    return 0;
}

/* Own window w's summed field acc (4, a), from its three pass images in the scratch, added in
 * pass order as cp_net3d_pass does; buf: scratch of 3 x a floats. */
static int sum_passes(run3 *r, const wwin *w, float *buf, float *acc, char *err)
{
    const cp_box3 a = w->bx.a;
    const int64_t na = cp_box3_voxels(a);
    memset(acc, 0, sizeof(float) * (size_t)(4 * na));
    for (int pass = 0; pass < 3; pass++) {
        int rc = scratch_io(r, 0, buf, 3 * na, w->at + pass * 3 * na, err);
        if (rc) return rc;
        cp_view va = cp_view_of(pass, a.n[0], a.n[1], a.n[2]);
        int64_t p0, pn, rect[4];
        cp_view_rect(pass, a, &p0, &pn, rect);
        for (int64_t i = 0; i < pn; i++)
            cp_view_add(&va, i, buf + i * 3 * rect[2] * rect[3], rect[2] * rect[3], acc, na);
    }
    return 0;
}

/* Wave t: the three passes (each plane's image of each own window into the scratch file), then
 * every own window summed, finished and emitted. */
static int do_wave(run3 *r, int64_t t, int counting, const cp_box3 *ws,
                   const volatile sig_atomic_t *stop, cp_dnet3_emit emit, void *earg, char *err)
{
    int rc = wave_init(r, t, err);
    int64_t at = 0, most = 0;
    for (int64_t q = 0; q < r->nw; q++)
        if (r->w[q].rank == r->rank) {
            int64_t na = cp_box3_voxels(r->w[q].bx.a);
            r->w[q].at = at, at += 9 * na, most = max64(most, na);
        }
    if (!counting) {
        if (!rc && (r->fd = open(r->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
            rc = cp_errf(err, CP_EIO, "%s: cannot create the network's scratch: %s", r->path,
                         strerror(errno));
        rc = cp_agree(r->comm, rc, err);
    }
    for (int pass = 0; !rc && pass < 3; pass++) rc = do_pass(r, pass, counting, stop, err);
    float *acc = NULL, *buf = NULL, *out = NULL;
    if (!rc && !counting) {
        acc = malloc(sizeof(float) * (size_t)(4 * most + 1));
        buf = malloc(sizeof(float) * (size_t)(3 * most + 1));
        if (!acc || !buf) rc = cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a block");
    }
    for (int64_t q = 0; !rc && !counting && q < r->nw; q++) {
        const wwin *w = &r->w[q];
        if (w->rank != r->rank) continue;
        const cp_box3 b = ws[w->j];
        free(out);
        out = malloc(sizeof(float) * (size_t)(4 * cp_box3_voxels(b)));
        rc = out ? sum_passes(r, w, buf, acc, err)
                 : cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for a block");
        if (!rc) rc = cp_net3d_window_finish(acc, r->L, r->p, b, &w->bx, out, err);
        if (!rc) rc = emit(earg, w->j, out, err);
    }
    free(acc), free(buf), free(out);
    if (r->fd >= 0) {
        close(r->fd);
        unlink(r->path);
        r->fd = -1;
    }
    return counting ? rc : cp_agree(r->comm, rc, err);
}

/* Every rank's windows' boxes, gathered on every rank. */
static int gather(run3 *r, const cp_box3 *ws, int64_t n, char *err)
{
    cp_net3d_boxes *mine = malloc(sizeof *mine * (size_t)(n > 0 ? n : 1));
    r->cnt = calloc((size_t)r->nranks, sizeof *r->cnt);
    r->first = calloc((size_t)r->nranks + 1, sizeof *r->first);
    int rc = mine && r->cnt && r->first ? 0 : cp_errf(err, CP_ENOMEM, "network 3-D: out of memory");
    for (int64_t j = 0; !rc && j < n; j++)
        rc = cp_net3d_window_boxes(r->L, r->p, ws[j], &mine[j], err);
    rc = cp_agree(r->comm, rc, err);
    if (!rc) MPI_Allgather(&n, 1, MPI_INT64_T, r->cnt, 1, MPI_INT64_T, r->comm);
    int *bc = rc ? NULL : malloc(sizeof(int) * (size_t)r->nranks);
    int *bd = rc ? NULL : malloc(sizeof(int) * (size_t)r->nranks);
    for (int o = 0; !rc && o < r->nranks; o++) r->first[o + 1] = r->first[o] + r->cnt[o];
    int64_t total = rc ? 0 : r->first[r->nranks], sz = (int64_t)sizeof *mine;
    r->all = rc ? NULL : malloc(sizeof *r->all * (size_t)(total > 0 ? total : 1));
    int lrc = rc || (bc && bd && r->all) ? 0
                                         : cp_errf(err, CP_ENOMEM, "network 3-D: out of memory");
    for (int o = 0; !rc && !lrc && o < r->nranks; o++) {
        if (r->cnt[o] * sz > INT_MAX || r->first[o] * sz > INT_MAX)
            lrc = cp_errf(err, CP_EPARAM, "network 3-D: too many blocks (use larger blocks)");
        else
            bc[o] = (int)(r->cnt[o] * sz), bd[o] = (int)(r->first[o] * sz);
    }
    if (!rc) rc = cp_agree(r->comm, lrc, err);
    if (!rc)
        MPI_Allgatherv(mine, (int)(n * sz), MPI_BYTE, r->all, bc, bd, MPI_BYTE, r->comm);
    free(mine), free(bc), free(bd);
    return rc;
}

int cp_dnet3_windows(MPI_Comm comm, const cp_model *m, cp_net3d_reader rd, void *arg,
                     const int64_t L[3], const cp_net3d_params *p, const cp_box3 *ws, int64_t n,
                     int64_t wave, const char *scratch, const volatile sig_atomic_t *stop,
                     cp_dnet3_emit emit, void *earg, cp_dnet3_stats *st, char *err)
{
    run3 r = {.comm = comm, .m = m, .L = L, .p = p, .nout = cp_model_get_info(m)->nout,
              .wave = wave > 0 ? wave : 1, .fd = -1};
    MPI_Comm_rank(comm, &r.rank);
    MPI_Comm_size(comm, &r.nranks);
    snprintf(r.path, sizeof r.path, "%s/net3d_scratch_rank%d.f32", scratch, r.rank);
    int rc = cp_net3d_scale(L, p->rescale, p->anisotropy, r.Ln, err);
    r.src = (cp_net3d_scaled){rd, arg, L, r.Ln};
    if (!rc && cp_model_get_info(m)->nchan != 2)
        rc = cp_errf(err, CP_EPARAM, "network 3-D: the model has %d input channels; the volume "
                     "gives 2", cp_model_get_info(m)->nchan);
    rc = cp_agree(comm, rc, err);
    if (!rc) rc = gather(&r, ws, n, err);
    r.load = calloc((size_t)r.nranks, sizeof *r.load);
    if (!rc && !r.load) rc = cp_errf(err, CP_ENOMEM, "network 3-D: out of memory");
    int64_t waves = 0, tiles = 0;
    for (int o = 0; !rc && o < r.nranks; o++) {
        int64_t k = (r.cnt[o] + r.wave - 1) / r.wave;
        waves = k > waves ? k : waves;
    }
    /* the progress counts this rank's tile runs, planned once before the first (no messages) */
    for (int64_t t = 0; !rc && cp_progress_on() && t < waves; t++)
        rc = do_wave(&r, t, 1, ws, stop, emit, earg, err);
    memset(r.load, 0, sizeof *r.load * (size_t)(rc ? 0 : r.nranks));
    rc = cp_agree(comm, rc, err);
    cp_progress_begin(&r.pr, "network", r.nranks > 1 ? "tiles of rank 0" : "tiles",
                      r.mine_total);
    for (int64_t t = 0; !rc && t < waves; t++) rc = do_wave(&r, t, 0, ws, stop, emit, earg, err);
    if (rc) cp_progress_cancel(&r.pr);
    cp_progress_end(&r.pr);
    for (int o = 0; !rc && o < r.nranks; o++) tiles += r.load[o];
    if (st && !rc) {
        st->tiles_run = tiles, st->tiles_volume = 0;
        for (int pass = 0; pass < 3; pass++) {
            cp_view v = cp_view_of(pass, r.Ln[0], r.Ln[1], r.Ln[2]);
            st->tiles_volume += v.planes * cp_net_image_tiles(v.rows, v.cols, CP_NET3D_BSIZE,
                                                             p->tile_overlap, p->augment);
        }
    }
    wave_free(&r);
    free(r.cnt), free(r.first), free(r.all), free(r.load);
    free(r.slab.p), free(r.its.p), free(r.img.p), free(r.in.p), free(r.out.p);
    free(r.sbuf.p), free(r.rbuf.p), free(r.canvas.p), free(r.wt.p);
    return rc;
}
