/* The output's attributes as h5py sees them (src/h5store.c): every string attribute is a
 * variable-length UTF-8 string, so h5py returns str (not bytes), including a path with non-ASCII
 * characters; numbers stay numbers; block_used is the block side of the run. One process (`one`)
 * and 2 ranks with --block 128 (`mpi`): the distributed writer takes the same path through
 * parallel HDF5. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

static const char *check_py =
    "import sys, h5py\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "strings = {'image_path', 'dir', 'output', 'pretrained_model', 'flows', 'cellprob_in', 'job',\n"
    "           'tool_version', 'reproduces', 'command_line', 'input_file', 'model_file',\n"
    "           'model_sha256'}\n"
    "a = dict(f.attrs.items())\n"
    "bad = sorted(k for k, v in a.items() if isinstance(v, bytes) or\n"
    "             getattr(getattr(v, 'dtype', None), 'kind', '') in ('S', 'O'))\n"
    "missing = sorted(k for k in strings if not isinstance(a.get(k), str))\n"
    "assert not bad and not missing, ('bytes:', bad, 'not str:', missing)\n"
    "for k in strings:\n"
    "    t = f.attrs.get_id(k).get_type()\n"
    "    assert t.is_variable_str() and t.get_cset() == h5py.h5t.CSET_UTF8, k\n"
    "assert a['image_path'] == sys.argv[2], (a['image_path'], sys.argv[2])\n"
    "assert sys.argv[2] in a['command_line'] and a['input_file'] == sys.argv[2]\n"
    "assert a['tool_version'].startswith('cellpose-mpi ')\n"
    "assert a['reproduces'] == 'Cellpose 3.1.1.3'\n"
    "assert len(a['model_sha256']) == 64 and a['dir'] == ''\n"
    "assert int(a['chan']) == 1 and float(a['diameter']) == 30.0 and int(a['n_masks']) >= 0\n"
    "assert int(a['block_used']) == int(sys.argv[3]), (a['block_used'], sys.argv[3])\n"
    "print('h5py: %d attributes, %d strings, all str' % (len(a), len(strings)))\n";

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "one") && strcmp(what, "mpi"))
        return fprintf(stderr, "usage: test_h5attrs one|mpi\n"), 2;
    char dir[1024], img[2048];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(img, sizeof img, "%s/cellule_\xc3\xa9t\xc3\xa9_\xc2\xb5m.tif", dir); /* UTF-8 */
    tu_run("cp %s/reference/random_cp3_seed0_synth512/input.tif '%s'", tu_shared(), img);
    FILE *f = fopen(tu_path("%s/check.py", dir), "w");
    fputs(check_py, f);
    fclose(f);
    int st = tu_run("%s %s/cellpose-mpi --quiet --pretrained_model "
                    "%s/models/tiny_random_nbase8_seed7.pth --image_path '%s' --chan 1 --chan2 2 "
                    "--diameter 30 %s --output %s/o.h5",
                    strcmp(what, "mpi") ? "" : MPIRUN " -n 2", tu_build_dir(), tu_shared(), img,
                    strcmp(what, "mpi") ? "" : "--block 128", dir);
    TU_CHECK(st == 0, "run failed (%d)", st);
    /* the block side used: --block, or the default plane block of 2048 */
    st = tu_run("/usr/bin/python3 %s/check.py %s/o.h5 '%s' %s", dir, dir, img,
                strcmp(what, "mpi") ? "2048" : "128");
    TU_CHECK(st == 0, "h5py does not read every string attribute as str");
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
