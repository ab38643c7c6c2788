# A stack's label planes stitched and hole-filled in 3-D where they are (mpi/dstitch.c,
# mpi/dfill3.c) on 1-4 ranks: identical to cp_post_stitch + cp_post_fill_and_min_size on the
# whole volume, on crafted and random volumes.
foreach(np 1 2 3 4)
  cp_add_mpi_test(NAME dstack_stitch_fill_np${np} SOURCE test_dstack.c NP ${np}
                  LINK dstitch post bstore TIMEOUT 300)
endforeach()
