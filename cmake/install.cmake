# `cmake --install build --prefix P`: what an HPC site installs (or wraps as an environment
# module, P/bin on PATH):
#   P/bin/cellpose-mpi
#   P/share/cellpose-mpi/slurm/   the sbatch scripts and scaling_study.py (they find the program as
#                                 build/cellpose-mpi under the submit folder, else on PATH)
#   P/share/cellpose-mpi/jobs/    the job-file examples
#   P/share/doc/cellpose-mpi/     README.md (and LICENSE where the project has one)
include(GNUInstallDirs)
install(TARGETS cellpose-mpi RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
file(GLOB CP_SBATCH CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/slurm/*.sbatch)
install(PROGRAMS ${CP_SBATCH} ${CMAKE_SOURCE_DIR}/slurm/scaling_study.py
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cellpose-mpi/slurm)
file(GLOB CP_JOBS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/jobs/*.cfg)
install(FILES ${CP_JOBS} DESTINATION ${CMAKE_INSTALL_DATADIR}/cellpose-mpi/jobs)
foreach(doc README.md LICENSE)
  if(EXISTS ${CMAKE_SOURCE_DIR}/${doc})
    install(FILES ${CMAKE_SOURCE_DIR}/${doc}
            DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/cellpose-mpi)
  endif()
endforeach()
