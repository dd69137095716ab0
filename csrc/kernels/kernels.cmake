# Kernel sources. Each instruction set is its own translation unit with its own
# flags; csrc/kernels/dispatch.cpp picks one at run time from the CPU's features.
# Only these files get ISA flags, so the rest of the library stays portable.
set(_bk ${CMAKE_CURRENT_LIST_DIR})
target_sources(bluelm PRIVATE
  ${_bk}/dispatch.cpp
  ${_bk}/scalar.cpp
  ${_bk}/scalar/kquants.cpp
  ${_bk}/kernel_choice.cpp
  ${_bk}/repack.cpp
  ${_bk}/cpu_features.cpp)

string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _bk_arch)
if(_bk_arch MATCHES "^(x86_64|amd64|x64)$")
  target_sources(bluelm PRIVATE ${_bk}/avx2.cpp ${_bk}/avx512.cpp)
  set_source_files_properties(${_bk}/avx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${_bk}/avx512.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni")
  target_compile_definitions(bluelm PRIVATE BLUELM_KERNELS_X86=1)
elseif(_bk_arch MATCHES "^(aarch64|arm64|armv8.*)$")
  target_sources(bluelm PRIVATE ${_bk}/neon.cpp ${_bk}/neon_dotprod.cpp ${_bk}/neon_i8mm.cpp)
  # neon.cpp needs only the AArch64 baseline (ASIMD, fp16<->fp32 conversions).
  set_source_files_properties(${_bk}/neon_dotprod.cpp PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+fp16+dotprod")
  set_source_files_properties(${_bk}/neon_i8mm.cpp PROPERTIES
    COMPILE_OPTIONS "-march=armv8.6-a+fp16+dotprod+i8mm")
  target_compile_definitions(bluelm PRIVATE BLUELM_KERNELS_ARM=1)
endif()
unset(_bk)
unset(_bk_arch)
