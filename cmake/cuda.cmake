# CUDA backend switch. MAMBACPP_CUDA defaults to ON when nvcc is found; the CPU-only build links
# src/core/cuda_stub.cpp instead of the backend.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  option(MAMBACPP_CUDA "Build the CUDA backend" ON)
else()
  option(MAMBACPP_CUDA "Build the CUDA backend" OFF)
endif()
