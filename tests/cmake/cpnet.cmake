# The .pth reader and the CPnet forward (src/pth.c, src/cpnet.c).
cp_add_test(NAME pth_unit SOURCE test_pth.c LINK pth cpnet PkgConfig::ZIP TIMEOUT 120)
cp_add_test(NAME cpnet_unit SOURCE test_cpnet.c LINK cpnet ARGS unit TIMEOUT 120)
cp_add_test(NAME cpnet_determinism SOURCE test_cpnet.c LINK cpnet ARGS determinism TIMEOUT 120)
cp_add_test(NAME cpnet_parity_random_cp3_seed0_synth512 SOURCE test_cpnet.c LINK cpnet
            ARGS parity random_cp3_seed0_synth512 random_cp3_seed0.pth TIMEOUT 120)
cp_add_test(NAME cpnet_parity_tiny_nbase8_augment_diam60 SOURCE test_cpnet.c LINK cpnet
            ARGS parity tiny_nbase8_augment_diam60 tiny_random_nbase8_seed7.pth TIMEOUT 120)
