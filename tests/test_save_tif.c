/* --save_tif (src/masks_tif.c, written after the output is committed, a plane at a time): through
 * the real CLI, <image stem>_cp_masks.tif holds exactly the /labels of the output, page for plane,
 * uint32, and no .partial file is left:
 *   plane   the 512 synthetic crop, trained model, one process
 *   stack   the 3-plane synthetic stack, trained model, stitched, on 2 ranks
 *   volume  the 17x61x80 synthetic volume in 3-D, tiny model, one process holding it whole and
 *           on 2 ranks over blocks of 32 (the same pages)
 *   flows3  masks from the oracle's 3-D flows (protrusions) over blocks of 32 on 3 ranks */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

/* Runs `launch cellpose-mpi <args> --save_tif --output <dir>/<out>.h5` on input (its stem names
 * the TIFF, next to the output) and checks the TIFF against /labels. */
static void check(const char *launch, const char *input, const char *args, const char *out)
{
    const char *dir = tu_tmpdir();
    const char *stem_end = strrchr(input, '.'), *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    char stem[512];
    snprintf(stem, sizeof stem, "%.*s", (int)(stem_end - base), base);
    char h5[2048], tif[2048];
    snprintf(h5, sizeof h5, "%s/%s.h5", dir, out);
    snprintf(tif, sizeof tif, "%s/%s_cp_masks.tif", dir, stem);
    unlink(tif);
    int st = tu_run("%s %s/cellpose-mpi --quiet %s --save_tif --output %s", launch, tu_build_dir(),
                    args, h5);
    TU_CHECK(st == 0, "%s: exit %d", out, st);
    if (st) return;
    int64_t n = 0;
    uint32_t *lab = tu_h5_read_u32(h5, "labels", &n);
    tu_tiff t = tu_read_tiff(tif);
    uint32_t mx = 0;
    for (int64_t i = 0; lab && i < n; i++) mx = lab[i] > mx ? lab[i] : mx;
    int same = lab && t.u32 && t.n == n && !memcmp(lab, t.u32, sizeof *lab * (size_t)n);
    printf("%s: %lld page(s) of %lldx%lld, %lld voxels, %u masks: %s\n", out, (long long)t.pages,
           (long long)t.ny, (long long)t.nx, (long long)n, mx, same ? "identical" : "DIFFER");
    TU_CHECK(same, "%s: the TIFF differs from /labels", out);
    TU_CHECK(mx > 0, "%s: no masks: the comparison would prove little", out);
    TU_CHECK(access(tu_path("%s.partial", tif), F_OK) != 0, "%s: %s.partial left", out, tif);
    tu_tiff_free(&t);
    free(lab);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    const char *sh = tu_shared();
    const char *trained = tu_need(tu_path("%s/models/synth_trained_nbase16.pth", sh));
    const char *tiny = tu_need(tu_path("%s/models/tiny_random_nbase8_seed7.pth", sh));
    char args[8192];
    if (!strcmp(what, "plane")) {
        const char *in = tu_need(tu_path("%s/data/synthetic/synth_1024.tif", sh));
        snprintf(args, sizeof args, "--pretrained_model %s --image_path %s --chan 1 --chan2 2 "
                 "--diameter 30", trained, in);
        check("", in, args, "plane");
    } else if (!strcmp(what, "stack")) {
        const char *in = tu_need(tu_path("%s/data/synthetic/synth_stack_3x256.tif", sh));
        snprintf(args, sizeof args, "--pretrained_model %s --image_path %s --z_axis 0 "
                 "--diameter 30 --stitch_threshold 0.25", trained, in);
        check(MPIRUN " -n 2", in, args, "stack");
    } else if (!strcmp(what, "volume")) {
        const char *in = tu_need(tu_path("%s/data/synthetic/synth_vol_17x61x80.tif", sh));
        snprintf(args, sizeof args, "--pretrained_model %s --image_path %s --z_axis 0 --do_3D "
                 "--diameter 30", tiny, in);
        check("", in, args, "volume_whole");
        snprintf(args + strlen(args), sizeof args - strlen(args), " --block 32");
        check(MPIRUN " -n 2", in, args, "volume_blocks");
        TU_CHECK(tu_run("h5diff -q %s/volume_whole.h5 %s/volume_blocks.h5 /labels", tu_tmpdir(),
                        tu_tmpdir()) == 0, "volume: labels over blocks differ");
    } else if (!strcmp(what, "flows3")) {
        const char *ref = tu_path("%s/reference/flows3d_protrusions", sh);
        const char *dp = tu_need(tu_path("%s/dP.tif", ref));
        snprintf(args, sizeof args, "--flows %s --cellprob_in %s/cellprob.tif --do_3D --block 32",
                 dp, ref);
        check(MPIRUN " -n 3", dp, args, "flows3");
    } else {
        fprintf(stderr, "usage: test_save_tif plane|stack|volume|flows3\n");
        return 2;
    }
    tu_run("rm -rf %s", tu_tmpdir());
    return tu_finish();
}
