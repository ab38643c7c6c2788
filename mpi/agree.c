/* Agreement on the status of a phase (see agree.h). */
#include "agree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

int cp_agree(MPI_Comm comm, int rc, char *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = rc ? rank : size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return 0;
    int code = rc;
    char msg[CP_ERR_LEN];
    int r, agreed = 0; /* "rank R: ..." already: a failure agreed on at an earlier boundary */
    if (rank == first && sscanf(err, "rank %d: %n", &r, &agreed) == 1 && agreed > 0)
        snprintf(msg, sizeof msg, "%s", err);
    else if (rank == first)
        snprintf(msg, sizeof msg, "rank %d: %s", rank, err);
    MPI_Bcast(&code, 1, MPI_INT, first, comm);
    MPI_Bcast(msg, CP_ERR_LEN, MPI_CHAR, first, comm);
    memcpy(err, msg, CP_ERR_LEN);
    return code ? code : CP_EMPI;
}

const char *cp_agree_solo(MPI_Comm comm, const char *err)
{
    int size;
    MPI_Comm_size(comm, &size);
    return size == 1 && !strncmp(err, "rank 0: ", 8) ? err + 8 : err;
}

/* Rank 0's "name=value\n" lines of every parameter but threads, into a malloc'ed buffer. */
static char *params_text(const cp_params *p, size_t *len)
{
    size_t cap = 1 << 16, used = 0;
    char *t = malloc(cap);
    for (const cp_param_def *d = cp_param_defs; t && d->name; d++) {
        if (!strcmp(d->name, "threads")) continue;
        char v[CP_PATH_LEN + 64];
        cp_param_format(p, d, v, sizeof v);
        int n = snprintf(t + used, cap - used, "%s=%s\n", d->name, v);
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
    *len = used;
    return t;
}

int cp_agree_params(MPI_Comm comm, const cp_params *p, char *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    size_t mine_len = 0, len0;
    char *mine = params_text(p, &mine_len);
    len0 = mine_len;
    MPI_Bcast(&len0, sizeof len0, MPI_BYTE, 0, comm);
    char *theirs = malloc(len0 + 1);
    if (rank == 0 && theirs && mine) memcpy(theirs, mine, len0);
    int have = theirs && mine, all;
    MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, comm);
    int rc = 0;
    if (!all) {
        rc = cp_errf(err, CP_ENOMEM, "comparing the parameters of the ranks: out of memory");
    } else {
        MPI_Bcast(theirs, (int)len0, MPI_CHAR, 0, comm);
        theirs[len0] = 0;
        /* the first line that differs names the flag */
        const char *a = mine, *b = theirs;
        while (*a && *b) {
            size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
            if (la != lb || memcmp(a, b, la)) break;
            a += la + (a[la] != 0), b += lb + (b[lb] != 0);
        }
        if (*a || *b) {
            const char *line = *a ? a : b, *eq = strchr(line, '=');
            int nl = eq ? (int)(eq - line) : 0;
            const char *va = *a && eq ? a + nl + 1 : "", *vb = *b ? b + nl + 1 : "";
            rc = cp_errf(err, CP_EPARAM, "--%.*s is '%.*s' here but '%.*s' on rank 0 (every rank "
                         "must run the same command line)", nl, line, (int)strcspn(va, "\n"), va,
                         (int)strcspn(vb, "\n"), vb);
        }
    }
    free(mine);
    free(theirs);
    return cp_agree(comm, rc, err);
}

int cp_agree_same(MPI_Comm comm, const void *buf, size_t len, const char *what, char *err)
{
    uint64_t h = 1469598103934665603ull, h0; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ ((const unsigned char *)buf)[i]) * 1099511628211ull;
    h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, comm);
    int rc = h == h0 ? 0 : cp_errf(err, CP_EPARAM, "%s differs from rank 0's", what);
    return cp_agree(comm, rc, err);
}
