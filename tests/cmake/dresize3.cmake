# The nearest resize of a label volume over 3-D blocks (mpi/dresize3.c, --no_resample with
# --do_3D) at 1 to 4 ranks: random label volumes resized up, down, mixed and to the same size
# through blocks of 4, 8 and one block, against cp_masks3_resize_back of the whole volume; a
# missing source block gives every rank the same error.
if(TARGET cp_dresize3)
  foreach(np 1 2 3 4)
    cp_add_mpi_test(NAME dresize3_np${np} SOURCE test_dresize3.c NP ${np}
                    LINK dresize3 bstore grid compute_masks3d ARGS 4 8 100 TIMEOUT 120)
  endforeach()
endif()
