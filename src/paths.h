/* Outputs that must not be inputs: before a run writes anything, every name it may write (the
 * .h5, its .partial, the <output>.work folder, the --save_tif masks and their .partial) is
 * compared with every file it reads (image or the images of --dir, model, saved flows, cellprob,
 * job file). The same file is refused whether named directly, through a symbolic link or through
 * a hard link: a run would otherwise destroy its own input and exit 0. */
#ifndef CP_PATHS_H
#define CP_PATHS_H

#include "params.h"

/* 1 if a and b are the same file: the same device and inode where both exist (links count),
 * else the same path once the folder part is resolved (realpath) — a name that does not exist
 * yet is compared by where it would be created. */
int cp_path_same(const char *a, const char *b);

/* Checks the outputs of a run with parameters p against its inputs. model_path: the resolved
 * model file, or NULL (saved flows). images: the n images of --dir, or NULL for --image_path /
 * --flows (taken from p). Error (CP_EPARAM): "x.h5 (the output) is the same file as a.tif (the
 * image): refusing to overwrite an input; nothing was written". */
int cp_paths_check(const cp_params *p, const char *model_path, char *const *images, int n,
                   char *err);

#endif
