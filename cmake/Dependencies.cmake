# Finds every external dependency and exposes each as an imported target:
#   MPI::MPI_CXX, OpenMP::OpenMP_CXX, Boost::program_options, Boost::json, GTest::gtest(_main),
#   dpt::blas (OpenBLAS, OpenMP build preferred), dpt::hdf5, and with CUDA
#   CUDA::cudart, CUDA::cublas, CUDA::cublasLt, dpt::nccl.
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(OpenMP REQUIRED COMPONENTS CXX)
# Boost 1.81 (Debian 12's libboost-*1.81-dev): Boost.JSON arrived in 1.75, after Debian's default
# 1.74. Every JSON the project writes goes through it (issue 13).
find_package(Boost 1.81 REQUIRED COMPONENTS program_options json)
find_package(GTest REQUIRED)
find_package(Threads REQUIRED)

# --- BLAS -------------------------------------------------------------------
# The OpenMP build of OpenBLAS runs single-threaded when called inside an OpenMP
# parallel region (our attention kernel does that per batch x head), instead of
# starting a second pool of threads on top of ours. Debian ships it in its own
# directory; the pthread build is the fallback.
find_library(DPT_OPENBLAS_LIBRARY NAMES openblas
  PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp
  NO_DEFAULT_PATH)
find_path(DPT_OPENBLAS_INCLUDE_DIR NAMES cblas.h
  PATHS /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/aarch64-linux-gnu/openblas-openmp
  NO_DEFAULT_PATH)
if(NOT DPT_OPENBLAS_LIBRARY OR NOT DPT_OPENBLAS_INCLUDE_DIR)
  find_library(DPT_OPENBLAS_LIBRARY NAMES openblas)
  find_path(DPT_OPENBLAS_INCLUDE_DIR NAMES cblas.h PATH_SUFFIXES openblas)
endif()
if(NOT DPT_OPENBLAS_LIBRARY OR NOT DPT_OPENBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "OpenBLAS not found: install Debian's libopenblas-openmp-dev "
                      "(scripts/install-deps.sh does), or set DPT_OPENBLAS_LIBRARY and "
                      "DPT_OPENBLAS_INCLUDE_DIR.")
endif()
add_library(dpt::blas INTERFACE IMPORTED)
target_link_libraries(dpt::blas INTERFACE ${DPT_OPENBLAS_LIBRARY})
target_include_directories(dpt::blas INTERFACE ${DPT_OPENBLAS_INCLUDE_DIR})
message(STATUS "BLAS: ${DPT_OPENBLAS_LIBRARY}")

# --- HDF5 -------------------------------------------------------------------
# FindHDF5 reports variables; wrap them in one imported target.
find_package(HDF5 REQUIRED COMPONENTS C)
add_library(dpt::hdf5 INTERFACE IMPORTED)
target_link_libraries(dpt::hdf5 INTERFACE ${HDF5_C_LIBRARIES})
target_include_directories(dpt::hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(dpt::hdf5 INTERFACE ${HDF5_C_DEFINITIONS})

# --- CUDA and NCCL ----------------------------------------------------------
set(DPT_HAVE_CUDA OFF)
set(DPT_HAVE_NCCL OFF)
if(NOT DPT_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES ${DPT_CUDA_ARCHITECTURES})
    # One CUDA runtime in every binary: the shared one, which the libraries (cuBLAS, cuBLASLt,
    # NCCL through CUDA::cudart) link as well; CMake's default for .cu objects is the static
    # one, and two runtimes in one process keep two sets of state.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 has no C++20 flags for nvcc
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(DPT_HAVE_CUDA ON)
  elseif(DPT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "DPT_CUDA=ON but no nvcc was found: put nvcc on PATH, set "
                        "CMAKE_CUDA_COMPILER, or configure with -DDPT_CUDA=OFF.")
  endif()
endif()

if(DPT_HAVE_CUDA)
  set(DPT_NCCL_HOME "" CACHE PATH "Where NCCL is installed (include/nccl.h, lib/libnccl.so)")
  find_path(DPT_NCCL_INCLUDE_DIR nccl.h
    HINTS ${DPT_NCCL_HOME} $ENV{NCCL_HOME} ${CUDAToolkit_LIBRARY_ROOT} /usr/local/cuda
    PATH_SUFFIXES include)
  find_library(DPT_NCCL_LIBRARY nccl
    HINTS ${DPT_NCCL_HOME} $ENV{NCCL_HOME} ${CUDAToolkit_LIBRARY_ROOT} /usr/local/cuda
    PATH_SUFFIXES lib lib64)
  if(DPT_NCCL_INCLUDE_DIR AND DPT_NCCL_LIBRARY)
    add_library(dpt::nccl INTERFACE IMPORTED)
    target_link_libraries(dpt::nccl INTERFACE ${DPT_NCCL_LIBRARY})
    target_include_directories(dpt::nccl INTERFACE ${DPT_NCCL_INCLUDE_DIR})
    set(DPT_HAVE_NCCL ON)
    message(STATUS "NCCL: ${DPT_NCCL_LIBRARY}")
  else()
    message(WARNING "NCCL not found: gradients on GPUs will travel over MPI. Set DPT_NCCL_HOME "
                    "(or the NCCL_HOME environment variable) to the NCCL install prefix.")
  endif()
endif()
