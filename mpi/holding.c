/* The holding relation's shared pieces (see holding.h). */
#include "holding.h"

#include <limits.h>
#include <stdlib.h>

#include "agree.h"
#include "cp_err.h"

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
