# --save_overlay (tests/test_overlay.c): unit rules and a downsampled synthetic result, then the
# real CLI on one process, on a stack, and on 2 ranks with --block 128.
cp_add_test(NAME overlay_unit SOURCE test_overlay.c LINK overlay h5store tiff_io params
            PkgConfig::PNG ARGS unit TIMEOUT 300)
foreach(t cli stack mpi)
  cp_add_test(NAME overlay_${t} SOURCE test_overlay.c ARGS ${t} TIMEOUT 600)
endforeach()
