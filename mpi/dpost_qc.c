/* The flow-error QC of the per-mask steps (see dpost_impl.h): a label whose box lies in one
 * block is checked there, on the ideal flows of the block's local labels; a crossing label at its
 * owner, from its pixels and their dP gathered there. Sums in raster order, as cp_post_flow_qc. */
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "dpost_impl.h"
#include "flows.h"
#include "post.h"

/* Records moved between ranks (memset before filling: padding travels too). */
struct qpix { /* a pixel of a crossing label with its network flow, for the QC */
    int64_t idx;
    uint32_t v;
    float dy, dx;
};

static int cmp_qpix(const void *a, const void *b)
{
    const struct qpix *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* QC of the labels whose box lies in block b: ideal flows of those labels alone on the block
 * (translation does not change them), sums in raster order. Crossing labels' pixels go to their
 * owners. bad[v] = 1 for a removed label. scratch: cid (n+1 zeros, left zeroed), list, canvas
 * (block), mu (2 * block). */
static int qc_block(struct run *r, const struct stats *s, int64_t b, double thr, unsigned char *bad,
                    uint32_t *cid, uint32_t *list, uint32_t *canvas, double *mu, double *sum)
{
    cp_rect br;
    char name[64];
    int rc = load(r, CP_SLOT_M0, b, r->blk, &br);
    cp_rect gr = cp_rect_grow(r->g, br, 1);
    int64_t gn = gr.ny * gr.nx, n = br.ny * br.nx;
    if (!rc)
        rc = cp_bstore_get(r->d->store, cp_dname(r->d, CP_SLOT_DP, name), b, r->dp,
                           sizeof(float) * (size_t)(3 * gn), r->err);
    if (rc) return rc;
    uint32_t k = 0;
    for (int64_t y = 0; y < br.ny; y++)
        for (int64_t x = 0; x < br.nx; x++) {
            int64_t p = y * br.nx + x, q = (br.y0 - gr.y0 + y) * gr.nx + br.x0 - gr.x0 + x;
            uint32_t v = r->blk[p];
            canvas[p] = 0;
            if (v && crossing(r, s, v)) {
                struct qpix rec;
                memset(&rec, 0, sizeof rec);
                rec.idx = (br.y0 + y) * r->g->Lx + br.x0 + x, rec.v = v;
                rec.dy = r->dp[q], rec.dx = r->dp[gn + q];
                if ((rc = send(r, &r->qpx, label_owner(r, s, v), &rec, "QC pixels in transit")))
                    return rc;
            } else if (v) {
                if (!cid[v]) cid[v] = ++k, list[k] = v;
                canvas[p] = cid[v];
            }
        }
    if (k && (rc = cp_masks_to_flows(canvas, br.ny, br.nx, mu, r->err)) != 0) return rc;
    memset(sum, 0, sizeof(double) * 2 * ((size_t)k + 1));
    for (int64_t y = 0; y < br.ny; y++)
        for (int64_t x = 0; x < br.nx; x++) {
            int64_t p = y * br.nx + x, q = (br.y0 - gr.y0 + y) * gr.nx + br.x0 - gr.x0 + x;
            if (canvas[p])
                cp_post_flow_error_add(sum + 2 * canvas[p], mu[p], mu[n + p], r->dp[q],
                                       r->dp[gn + q]);
        }
    for (uint32_t c = 1; c <= k; c++) {
        bad[list[c]] = cp_post_flow_error(sum + 2 * c, s->area[list[c]]) > thr;
        cid[list[c]] = 0;
    }
    return 0;
}

/* QC of crossing labels at their owner, from their gathered pixels sorted by (label, index). */
static int qc_owned(struct run *r, const struct stats *s, struct qpix *px, int64_t npx,
                    double thr, unsigned char *bad)
{
    qsort(px, (size_t)npx, sizeof *px, cmp_qpix);
    int64_t Lx = r->g->Lx;
    for (int64_t i = 0; i < npx;) {
        uint32_t v = px[i].v;
        int64_t e = i;
        while (e < npx && px[e].v == v) e++;
        cp_rect bx = label_box(s, v);
        int64_t n = bx.ny * bx.nx;
        uint32_t *canvas = calloc((size_t)n, sizeof *canvas);
        double *mu = malloc(sizeof(double) * 2 * (size_t)n);
        int rc = canvas && mu ? 0 : oom(r->err, "the box of a crossing label");
        for (int64_t k = i; !rc && k < e; k++)
            canvas[(px[k].idx / Lx - bx.y0) * bx.nx + px[k].idx % Lx - bx.x0] = 1;
        if (!rc) rc = cp_masks_to_flows(canvas, bx.ny, bx.nx, mu, r->err);
        double sum[2] = {0, 0};
        for (int64_t k = i; !rc && k < e; k++) {
            int64_t p = (px[k].idx / Lx - bx.y0) * bx.nx + px[k].idx % Lx - bx.x0;
            cp_post_flow_error_add(sum, mu[p], mu[n + p], px[k].dy, px[k].dx);
        }
        if (!rc) bad[v] = cp_post_flow_error(sum, e - i) > thr;
        free(canvas);
        free(mu);
        if (rc) return rc;
        i = e;
    }
    return 0;
}

/* The flow QC: bad[v] = 1 for every label it removes (bad zeroed by the caller). */
int cp_dpost_flow_qc(struct run *r, const struct stats *s, double thr, unsigned char *bad)
{
    int64_t n = s->n, B = r->g->B;
    uint32_t *cid = calloc((size_t)n + 1, sizeof *cid);
    uint32_t *list = malloc(sizeof(uint32_t) * ((size_t)r->bmax + 1));
    uint32_t *canvas = malloc(sizeof(uint32_t) * (size_t)r->bmax);
    double *mu = malloc(sizeof(double) * 2 * (size_t)r->bmax);
    double *sum = malloc(sizeof(double) * 2 * ((size_t)min64(n, B * B) + 1));
    int rc = cid && list && canvas && mu && sum ? 0 : oom(r->err, "the flow QC of a block");
    if (!rc) rc = cp_outbox_init(&r->qpx, r->d->comm, sizeof(struct qpix), r->err);
    const int made = (rc = cp_agree(r->d->comm, rc, r->err)) == 0; /* r->qpx, on every rank */
    for (int64_t b = r->b0; !rc && b < r->b1; b++)
        rc = qc_block(r, s, b, thr, bad, cid, list, canvas, mu, sum);
    free(cid);
    free(list);
    free(canvas);
    free(mu);
    free(sum);
    if (!made) return rc;
    struct qpix *px;
    int64_t npx;
    if ((rc = cp_exchange(&r->qpx, rc, INT64_MAX, (void **)&px, &npx, r->err)) != 0) return rc;
    rc = qc_owned(r, s, px, npx, thr, bad);
    free(px);
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) return rc;
    for (int64_t o = 0; o <= n; o += 1 << 28)
        MPI_Allreduce(MPI_IN_PLACE, bad + o, (int)min64(n + 1 - o, 1 << 28), MPI_UNSIGNED_CHAR,
                      MPI_MAX, r->d->comm);
    return 0;
}

/* "qc" of every own block: "m0" with the labels flagged bad set to 0. */
int cp_dpost_write_qc(struct run *r, const unsigned char *bad)
{
    int rc = 0;
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load(r, CP_SLOT_M0, b, r->blk, &br)) != 0) break;
        for (int64_t p = 0; p < br.ny * br.nx; p++)
            if (bad[r->blk[p]]) r->blk[p] = 0;
        rc = store(r, CP_SLOT_QC, b, r->blk, br);
    }
    return cp_agree(r->d->comm, rc, r->err);
}
