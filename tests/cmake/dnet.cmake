# The network phase over windows and owner blocks (mpi/dnet.c, tests/test_dnet.c): windows against
# the whole plane (one rank), then the distributed run with resume at 1-4 ranks.
set(CP_DNET_LINK dnet dplane bstore agree grid image prep run_net cpnet tiles resize)
foreach(c tiny_nbase8_augment_diam60 synth_trained_nbase16_diam40_noresample)
  cp_add_mpi_test(NAME dnet_window_${c} SOURCE test_dnet.c NP 1 LINK ${CP_DNET_LINK}
                  ARGS window ${c} TIMEOUT 300)
endforeach()
foreach(c synth_trained_nbase16_synth512 tiny_synth1024) # minutes under the sanitizers
  cp_add_mpi_test(NAME dnet_window_${c} SOURCE test_dnet.c NP 1 LINK ${CP_DNET_LINK}
                  ARGS window ${c} TIMEOUT 300 LABELS heavy)
endforeach()
foreach(np 1 2 3 4)
  cp_add_mpi_test(NAME dnet_run_tiny_nbase8_augment_diam60_np${np} SOURCE test_dnet.c NP ${np}
                  LINK ${CP_DNET_LINK} ARGS run tiny_nbase8_augment_diam60 96 TIMEOUT 300)
  cp_add_mpi_test(NAME dnet_run_synth_trained_nbase16_diam40_noresample_np${np} SOURCE test_dnet.c
                  NP ${np} LINK ${CP_DNET_LINK} ARGS run synth_trained_nbase16_diam40_noresample 96
                  TIMEOUT 300)
  cp_add_mpi_test(NAME dnet_run_tiny_synth1024_np${np} SOURCE test_dnet.c NP ${np}
                  LINK ${CP_DNET_LINK} ARGS run tiny_synth1024 128 TIMEOUT 300 LABELS heavy)
endforeach()
