# Distributed 3-D flow following (mpi/dfollow3.c on mpi/prounds.c) at 1 to 4 ranks: p_final of
# the four 3-D reference cases (flows3d_protrusions with interp on and off) bit-exact against the
# oracle and the whole-volume run through blocks of 4, 8 and 16 voxels and one block, and the
# edge/failure cases. The block sweeps are label heavy (minutes each under the sanitizers).
if(TARGET cp_dfollow3)
  set(CP_DFOLLOW3_CASES
    tiny_nbase8_vol3d:interp tiny_nbase8_vol3d_multitile:interp
    synth_trained_nbase16_vol3d_aniso:interp flows3d_protrusions:interp
    flows3d_protrusions:nointerp)
  foreach(np 1 2 3 4)
    foreach(cv ${CP_DFOLLOW3_CASES})
      string(REPLACE ":" ";" cv ${cv})
      list(GET cv 0 c)
      list(GET cv 1 v)
      cp_add_mpi_test(NAME dfollow3_${c}_${v}_np${np} SOURCE test_dfollow3.c NP ${np}
                      LINK dfollow3 bstore follow3d ARGS case ${c} ${v} 4 8 16 0 TIMEOUT 300
                      LABELS heavy)
    endforeach()
    cp_add_mpi_test(NAME dfollow3_edges_np${np} SOURCE test_dfollow3.c NP ${np}
                    LINK dfollow3 bstore follow3d ARGS edges TIMEOUT 60)
  endforeach()
  # blocks of 4 take minutes each under the sanitizers (label heavy above): there, the smallest
  # case through blocks of 16 and one block, on 2 and 3 ranks
  foreach(np 2 3)
    cp_add_mpi_test(NAME dfollow3_small_blocks16_np${np} SOURCE test_dfollow3.c NP ${np}
                    LINK dfollow3 bstore follow3d ARGS case tiny_nbase8_vol3d interp 16 0
                    TIMEOUT 300)
  endforeach()
endif()
