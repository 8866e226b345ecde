# CUDA backend switch, included by the top-level CMakeLists.txt before mambacpp_lib is defined.
#
# MAMBACPP_CUDA defaults to ON when nvcc is found. When it is ON this file enables the CUDA language (C++20,
# architectures "80;90" unless CMAKE_CUDA_ARCHITECTURES is given), replaces src/core/cuda_stub.cpp in
# MAMBACPP_SOURCES by the backend's sources (src/core/cuda/, src/ops/cuda/), defines MAMBACPP_HAS_CUDA and links
# mambacpp_lib with the CUDA runtime and cuBLASLt. When it is OFF (or nvcc is absent) the CPU-only build is
# untouched and links the stub, whose device allocations fail with a clear error.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  option(MAMBACPP_CUDA "Build the CUDA backend" ON)
else()
  option(MAMBACPP_CUDA "Build the CUDA backend" OFF)
endif()

if(MAMBACPP_CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "MAMBACPP_CUDA=ON, but no CUDA compiler (nvcc) was found; install the CUDA toolkit or "
                        "configure with -DMAMBACPP_CUDA=OFF")
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures to build for")
  endif()
  enable_language(CUDA)
  # C++20 for CUDA sources. CMake before 3.26 does not know nvcc's flag for the CUDA20 dialect: name it.
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
  find_package(CUDAToolkit REQUIRED)

  add_compile_options($<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  add_compile_definitions(MAMBACPP_HAS_CUDA)

  list(FILTER MAMBACPP_SOURCES EXCLUDE REGEX "src/core/cuda_stub\\.cpp$")
  file(GLOB MAMBACPP_CUDA_SOURCES CONFIGURE_DEPENDS
    ${PROJECT_SOURCE_DIR}/src/core/cuda/*.cpp ${PROJECT_SOURCE_DIR}/src/ops/cuda/*.cpp
    ${PROJECT_SOURCE_DIR}/src/ops/cuda/*.cu)
  list(APPEND MAMBACPP_SOURCES ${MAMBACPP_CUDA_SOURCES})

  # mambacpp_lib does not exist yet: link it once the top-level directory has been read.
  function(_mambacpp_link_cuda)
    target_link_libraries(mambacpp_lib PUBLIC CUDA::cudart CUDA::cublasLt)
  endfunction()
  cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL _mambacpp_link_cuda)
  message(STATUS "mambacpp: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
                 "${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "mambacpp: CUDA backend OFF (CPU only)")
endif()
