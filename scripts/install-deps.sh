#!/usr/bin/env bash
# Installs everything cellpose-mpi needs to build, test and benchmark, from Debian packages only.
# Usage: scripts/install-deps.sh [--bench] [--fuzz]
#   --bench adds PyTorch for the reference timings
#   --fuzz adds clang 14 with libFuzzer and llvm-cov for tests/fuzz (docs/fuzzing.md)
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev openssh-client   # MPI (mpirun looks for an rsh/ssh agent)
  libhdf5-openmpi-dev hdf5-tools              # parallel HDF5 + h5dump
  libtiff-dev                                 # TIFF images
  libopenblas-openmp-dev                      # sgemm for the network (OpenMP build)
  libzip-dev                                  # the zip container of .pth model files
  libmd-dev                                   # sha256 of model files and inputs (provenance, --resume)
  zlib1g-dev                                  # crc32 of checkpoint blocks
  libconfig-dev                               # job files
  libjson-c-dev                               # tests read the oracle's case.json
  libpng-dev                                  # --save_overlay pictures
  bsdutils                                    # script(1): progress tests on a pseudo-terminal
  python3 python3-numpy python3-h5py python3-tifffile   # test helpers (reading outputs)
  python3-matplotlib                          # slurm/scaling_study.py plots
)
for arg in "$@"; do
  case $arg in
    --bench) pkgs+=(python3-torch) ;;
    --fuzz) pkgs+=(clang-14 libclang-rt-14-dev llvm-14) ;;  # -fsanitize=fuzzer; llvm-cov-14
    *) echo "install-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
