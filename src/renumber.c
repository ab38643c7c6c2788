/* Renumbering by first appearance (see renumber.h). */
#include "renumber.h"

#include <stdlib.h>

#include "cp_err.h"

struct v_at {
    int64_t first;
    uint32_t v;
};

static int cmp_v_at(const void *a, const void *b)
{
    const struct v_at *x = a, *y = b;
    return (x->first > y->first) - (x->first < y->first);
}

int64_t cp_renumber_ids(const int64_t *first, int64_t stride, int64_t n, uint32_t *to)
{
    struct v_at *k = malloc(sizeof *k * ((size_t)n + 1));
    if (!k) return CP_ENOMEM;
    int64_t m = 0;
    to[0] = 0;
    for (int64_t v = 1; v <= n; v++) {
        const int64_t f = first[v * stride];
        if (to[v] && f < INT64_MAX) k[m++] = (struct v_at){f, (uint32_t)v};
        to[v] = 0;
    }
    qsort(k, (size_t)m, sizeof *k, cmp_v_at);
    for (int64_t i = 0; i < m; i++) to[k[i].v] = (uint32_t)(i + 1);
    free(k);
    return m;
}

int64_t cp_renumber_array(uint32_t *labels, int64_t n, uint32_t m, uint32_t *to)
{
    int64_t *first = malloc(sizeof *first * ((size_t)m + 1));
    if (!first) return CP_ENOMEM;
    for (int64_t v = 0; v <= (int64_t)m; v++) first[v] = INT64_MAX;
    for (int64_t i = n - 1; i >= 0; i--) first[labels[i]] = i;
    int64_t kept = cp_renumber_ids(first, 1, m, to);
    free(first);
    for (int64_t i = 0; kept >= 0 && i < n; i++) labels[i] = to[labels[i]];
    return kept;
}

int64_t cp_renumber(uint32_t *labels, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = labels[i] > m ? labels[i] : m;
    if (m == 0) return 0;
    uint32_t *to = malloc(sizeof *to * ((size_t)m + 1));
    if (!to) return CP_ENOMEM;
    for (int64_t v = 0; v <= (int64_t)m; v++) to[v] = 1;
    int64_t kept = cp_renumber_array(labels, n, m, to);
    free(to);
    return kept;
}
