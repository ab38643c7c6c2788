# Distributed normalization percentiles (mpi/dnorm.c) against the single-process engine, on 1-4
# ranks: the reference inputs (per plane, and norm3D for the stack), generated float32 images over
# 224^3 pixels (row/column strides, plane stride), and the edge cases (constant, near-constant,
# NaN, bad parameters).
foreach(np 1 2 3 4)
  foreach(c random_cp3_seed0_synth512 tiny_nbase8_augment_diam60 synth_trained_nbase16_neuron512
            synth_trained_nbase16_float32_invert synth_trained_nbase16_stack3)
    cp_add_mpi_test(NAME dnorm_${c}_np${np} SOURCE test_dnorm.c NP ${np} LINK dnorm image prep tiff_io
                    ARGS case ${c} TIMEOUT 120)
  endforeach()
  foreach(m big deep edge)
    cp_add_mpi_test(NAME dnorm_${m}_np${np} SOURCE test_dnorm.c NP ${np} LINK dnorm image prep tiff_io
                    ARGS ${m} TIMEOUT 120)
  endforeach()
endforeach()
