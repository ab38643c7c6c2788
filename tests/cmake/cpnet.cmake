# The .pth reader and the CPnet forward (src/pth.c, src/cpnet.c).
cp_add_test(NAME pth_unit SOURCE test_pth.c LINK pth cpnet PkgConfig::ZIP TIMEOUT 120)
cp_add_test(NAME cpnet_unit SOURCE test_cpnet.c LINK cpnet ARGS unit TIMEOUT 120)
cp_add_test(NAME cpnet_determinism SOURCE test_cpnet.c LINK cpnet ARGS determinism TIMEOUT 120)
cp_add_test(NAME cpnet_parity_random_cp3_seed0_synth512 SOURCE test_cpnet.c LINK cpnet
            ARGS parity random_cp3_seed0_synth512 random_cp3_seed0.pth TIMEOUT 120)
cp_add_test(NAME cpnet_parity_tiny_nbase8_augment_diam60 SOURCE test_cpnet.c LINK cpnet
            ARGS parity tiny_nbase8_augment_diam60 tiny_random_nbase8_seed7.pth TIMEOUT 120)
# The Winograd F(4x4, 3x3) convolution (src/winograd.c): layers against float64, and the network's
# bits at batch 1 / 8 and 1 / 2 threads.
cp_add_test(NAME cpnet_winograd_layers SOURCE test_winograd.c LINK winograd cpnet ARGS layers TIMEOUT 300)
cp_add_test(NAME cpnet_winograd_determinism_tiny SOURCE test_winograd.c LINK winograd cpnet
            ARGS determinism tiny_random_nbase8_seed7.pth TIMEOUT 300)
cp_add_test(NAME cpnet_winograd_determinism_trained SOURCE test_winograd.c LINK winograd cpnet
            ARGS determinism synth_trained_nbase16.pth TIMEOUT 300)
