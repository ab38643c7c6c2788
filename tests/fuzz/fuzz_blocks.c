/* Fuzz target: checkpoint block files through mpi/bstore.c, the layer every distributed phase and
 * --resume read their blocks through. The input is the content of one block file, put in a work
 * directory of this process as array "dp.7" and as queue "fin.7", and written raw as the file
 * "dp.8" (a damaged or foreign block); the target checks the reader's contract on it:
 * cp_bstore_size gives the data's size, cp_bstore_get of exactly that many bytes returns them
 * unchanged, one byte more is an error, one changed byte of the file fails the checksum,
 * cp_bstore_get and cp_bstore_verify agree on a raw file, cp_bstore_take returns the queue and
 * deletes it, an append after a put gives both parts. A broken contract aborts (a crash to libFuzzer).
 * The phases that interpret block content (dfollow, dmasks, dsegment) need an MPI plane and are
 * not reached from here (docs/fuzzing.md). */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bstore.h"
#include "cp_err.h"

static cp_bstore store;
static char dir[64];

static void cleanup(void) { cp_bstore_destroy(&store); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[CP_ERR_LEN];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cp_fuzz_blocks.XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(dir) || cp_bstore_open(&store, dir, err)) {
        fprintf(stderr, "fuzz_blocks: cannot make a work directory in %s\n", dir);
        exit(1);
    }
    atexit(cleanup);
    return 0;
}

#define CHECK(c)                                                                                 \
    do {                                                                                         \
        if (!(c)) {                                                                              \
            fprintf(stderr, "fuzz_blocks: contract broken: %s (%s)\n", #c, err);                 \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CP_ERR_LEN] = "";
    unsigned char *back = malloc(size + 1);
    if (!back) return 0;
    CHECK(cp_bstore_put(&store, "dp", 7, data, size, err) == 0);
    CHECK(cp_bstore_size(&store, "dp", 7) == (int64_t)size);
    CHECK(cp_bstore_get(&store, "dp", 7, back, size, err) == 0);
    CHECK(size == 0 || memcmp(back, data, size) == 0);
    CHECK(cp_bstore_get(&store, "dp", 7, back, size + 1, err) == CP_EFORMAT);
    char path[4200];
    cp_bstore_path(&store, "dp", 7, path, sizeof path);
    if (size) { /* one data byte changed behind the store's back: the crc32 must see it */
        FILE *f = fopen(path, "r+b");
        size_t i = data[0] % size;
        CHECK(f && fseek(f, (long)(16 + i), SEEK_SET) == 0 && /* past the 16-byte header */
              fputc(data[i] ^ 0x5a, f) != EOF);
        fclose(f);
        CHECK(cp_bstore_get(&store, "dp", 7, back, size, err) == CP_EFORMAT);
        CHECK(cp_bstore_verify(&store, "dp", 7, size, err) == CP_EFORMAT);
    }
    cp_bstore_remove(&store, "dp", 7);

    /* the input as a whole file: whatever it holds, get and verify agree and nothing crashes */
    cp_bstore_path(&store, "dp", 8, path, sizeof path);
    FILE *f = fopen(path, "wb");
    CHECK(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0);
    int64_t n = cp_bstore_size(&store, "dp", 8);
    CHECK(n >= -1 && n <= (int64_t)size);
    if (n >= 0) {
        int rg = cp_bstore_get(&store, "dp", 8, back, (size_t)n, err);
        int rv = cp_bstore_verify(&store, "dp", 8, (size_t)n, err);
        CHECK((rg == 0) == (rv == 0));
        CHECK(rg == 0 || rg == CP_EFORMAT);
    }
    cp_bstore_remove(&store, "dp", 8);
    CHECK(cp_bstore_size(&store, "dp", 7) == -1);
    CHECK(cp_bstore_get(&store, "dp", 7, back, size, err) == CP_EIO);

    /* a queue: two appends (split where the first byte says), taken whole */
    size_t cut = size ? data[0] % (size + 1) : 0;
    CHECK(cp_bstore_append(&store, "fin", 7, data, cut, err) == 0);
    CHECK(cp_bstore_append(&store, "fin", 7, data + cut, size - cut, err) == 0);
    void *q = NULL;
    size_t qn = 0;
    CHECK(cp_bstore_take(&store, "fin", 7, &q, &qn, err) == 0);
    CHECK(qn == size && (size == 0 || memcmp(q, data, size) == 0));
    free(q);
    CHECK(cp_bstore_size(&store, "fin", 7) == -1);
    CHECK(cp_bstore_take(&store, "fin", 7, &q, &qn, err) == 0 && q == NULL && qn == 0);
    free(back);
    return 0;
}
