/* Per-block arrays in the work directory (DESIGN.md §5): one small file per (array name, block),
 * written to a temporary name and renamed when complete, so a killed run leaves only whole files
 * and --resume can trust every file it finds. Queues (particles in transit) are append-only files
 * of fixed-size records. Keeping blocks on disk is what bounds the memory of a rank: a phase
 * loads one block, works, stores it, and moves on. */
#ifndef CP_BSTORE_H
#define CP_BSTORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cp_bstore {
    char dir[4096];
} cp_bstore;

/* Uses (creating it and its parents if needed) the directory dir. */
int cp_bstore_open(cp_bstore *s, const char *dir, char *err);
/* "<dir>/<name>.<b>" into path. */
void cp_bstore_path(const cp_bstore *s, const char *name, int64_t b, char *path, size_t len);

/* Writes bytes of data as array `name` of block b (atomically: temporary file + rename). */
int cp_bstore_put(const cp_bstore *s, const char *name, int64_t b, const void *data, size_t bytes,
                  char *err);
/* Reads exactly bytes of array `name` of block b; a missing or short file is an error. */
int cp_bstore_get(const cp_bstore *s, const char *name, int64_t b, void *data, size_t bytes,
                  char *err);
/* Size in bytes of array `name` of block b, or -1 if it does not exist. */
int64_t cp_bstore_size(const cp_bstore *s, const char *name, int64_t b);

/* Appends bytes to queue `name` of block b (created if needed). */
int cp_bstore_append(const cp_bstore *s, const char *name, int64_t b, const void *data,
                     size_t bytes, char *err);
/* Reads the whole queue into a malloc'ed buffer (*data, *bytes; NULL/0 if absent) and deletes
 * it: the caller now owns its content. */
int cp_bstore_take(const cp_bstore *s, const char *name, int64_t b, void **data, size_t *bytes,
                   char *err);

/* Deletes array `name` of block b if present. */
void cp_bstore_remove(const cp_bstore *s, const char *name, int64_t b);
/* Deletes the directory and everything in it. */
void cp_bstore_destroy(cp_bstore *s);
/* Before a directory is reused and emptied: 0 if dir does not exist, or is a folder (not a link)
 * that is empty or holds the file `marker` (our manifest); else an error naming dir ("exists and
 * is not a folder" / "no manifest"), so that a user's file or folder of that name is never
 * deleted. */
int cp_bstore_check_ours(const char *dir, const char *marker, char *err);

#endif
