# Hole filling and min_size of a volume over 3-D owner blocks (mpi/dpost3.c) at 1 to 4 ranks:
# "lab3" gathered against cp_post_fill_and_min_size_3d of the whole volume on seeded random label
# volumes and on the masks_raw of the 3-D reference cases (and their masks), through blocks of
# 4, 5, 8 voxels and one block; the hole maps of mpi/dholes3.c against the whole box's, every
# label of random volumes through blocks of 3, 4 and 7. The long sweeps are label heavy.
if(TARGET cp_dpost3)
  set(CP_DPOST3_LINK dpost3 bstore grid post)
  foreach(np 1 2 3 4)
    # blocks of 4 are slow (hundreds of block files per run): one rank count has them by default
    if(np EQUAL 3)
      set(bs 4 0)
    else()
      set(bs 5 8 0)
    endif()
    cp_add_mpi_test(NAME dpost3_random_np${np} SOURCE test_dpost3.c NP ${np}
                    LINK ${CP_DPOST3_LINK} ARGS random 1 ${bs} TIMEOUT 120)
    cp_add_mpi_test(NAME dpost3_holes_np${np} SOURCE test_dpost3.c NP ${np}
                    LINK ${CP_DPOST3_LINK} ARGS holes 3 3 4 7 TIMEOUT 120)
    cp_add_mpi_test(NAME dpost3_edges_np${np} SOURCE test_dpost3.c NP ${np}
                    LINK ${CP_DPOST3_LINK} ARGS edges TIMEOUT 60)
    # the sweep: seeds 1-12, six per rank count, each seed at two rank counts
    # (seeds 1-6 at 1 and 3 ranks, 7-12 at 2 and 4)
    if(np EQUAL 1 OR np EQUAL 3)
      set(seeds 1-6)
    else()
      set(seeds 7-12)
    endif()
    cp_add_mpi_test(NAME dpost3_random_sweep_np${np} SOURCE test_dpost3.c NP ${np}
                    LINK ${CP_DPOST3_LINK} ARGS random ${seeds} 4 5 8 0 TIMEOUT 600 LABELS heavy)
    foreach(c tiny_nbase8_vol3d synth_trained_nbase16_vol3d_aniso flows3d_protrusions)
      cp_add_mpi_test(NAME dpost3_${c}_np${np} SOURCE test_dpost3.c NP ${np}
                      LINK ${CP_DPOST3_LINK} ARGS case ${c} 5 8 16 0 TIMEOUT 300 LABELS heavy)
    endforeach()
  endforeach()
  # the reference cases in default runs: the smallest, 2 ranks, blocks of 16 and one block
  cp_add_mpi_test(NAME dpost3_case_small_np2 SOURCE test_dpost3.c NP 2
                  LINK ${CP_DPOST3_LINK} ARGS case tiny_nbase8_vol3d 16 0 TIMEOUT 120)
endif()
