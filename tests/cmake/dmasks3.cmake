# Raw masks of a volume over owner blocks (cp_dmasks3_run, mpi/dmasks.c) at 1 to 4 ranks: the
# three 3-D reference cases through cp_dfollow3_run and cp_dmasks3_run, "m03" against the oracle's
# masks_raw and cp_masks3_raw of the whole volume (blocks of 4, 8, 16 and one block: label heavy;
# the smallest case through blocks of 16 and one block in the default pass); crafted end points
# against cp_masks3_raw; bad "fin3" content.
if(TARGET cp_dmasks AND TARGET cp_dfollow3)
  set(CP_DMASKS3_CASES tiny_nbase8_vol3d synth_trained_nbase16_vol3d_aniso flows3d_protrusions)
  foreach(np 1 2 3 4)
    foreach(c ${CP_DMASKS3_CASES})
      cp_add_mpi_test(NAME dmasks3_${c}_np${np} SOURCE test_dmasks3.c NP ${np}
                      LINK dmasks dfollow3 bstore follow3d masks3d ARGS case ${c} 4 8 16 0
                      TIMEOUT 600 LABELS heavy)
    endforeach()
    cp_add_mpi_test(NAME dmasks3_crafted_np${np} SOURCE test_dmasks3.c NP ${np}
                    LINK dmasks dfollow3 bstore follow3d masks3d ARGS crafted TIMEOUT 300)
    cp_add_mpi_test(NAME dmasks3_bad_np${np} SOURCE test_dmasks3.c NP ${np}
                    LINK dmasks dfollow3 bstore follow3d masks3d ARGS bad TIMEOUT 60)
  endforeach()
  foreach(np 2 3)
    cp_add_mpi_test(NAME dmasks3_small_blocks16_np${np} SOURCE test_dmasks3.c NP ${np}
                    LINK dmasks dfollow3 bstore follow3d masks3d ARGS case tiny_nbase8_vol3d 16 0
                    TIMEOUT 300)
  endforeach()
endif()
