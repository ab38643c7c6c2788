# Distributed flow following (mpi/dfollow.c) at 1 to 4 ranks: p_final of four reference cases
# bit-exact through blocks of 32 to 64 pixels, a snake-shaped cell whose particles cross dozens
# of 24-pixel blocks (vs the whole-field run), and the edge/failure cases.
if(TARGET cp_dfollow)
  set(CP_DFOLLOW_CASES
    flows_protrusions_niter2000:48 flows_protrusions_nointerp:64
    synth_trained_nbase16_synth512:32 random_cp3_seed0_bsize512_niter2000:40)
  foreach(np 1 2 3 4)
    foreach(cb ${CP_DFOLLOW_CASES})
      string(REPLACE ":" ";" cb ${cb})
      list(GET cb 0 c)
      list(GET cb 1 b)
      cp_add_mpi_test(NAME dfollow_${c}_np${np} SOURCE test_dfollow.c NP ${np}
                      LINK dfollow dplane bstore follow flows ARGS case ${c} ${b} TIMEOUT 120)
    endforeach()
    cp_add_mpi_test(NAME dfollow_snake_np${np} SOURCE test_dfollow.c NP ${np}
                    LINK dfollow dplane bstore follow flows ARGS stress 24 TIMEOUT 120)
    cp_add_mpi_test(NAME dfollow_edges_np${np} SOURCE test_dfollow.c NP ${np}
                    LINK dfollow dplane bstore follow flows ARGS edges TIMEOUT 60)
  endforeach()
endif()
