# The vision tower: portable sources plus one AVX2 file for its element-wise ops,
# picked at run time by csrc/vision/vision_ops.cpp (as the kernel table is).
set(_bv ${CMAKE_CURRENT_LIST_DIR})
target_sources(bluelm PRIVATE
  ${_bv}/vision_config.cpp
  ${_bv}/vision_weights.cpp
  ${_bv}/vision_encoder.cpp
  ${_bv}/vision_model.cpp
  ${_bv}/vision_ops.cpp
  ${_bv}/vision_i8.cpp)
# The int8 format's scalar reference rounds each product before the next add, as
# its SIMD versions do (no fused multiply-add contraction on any target).
set_source_files_properties(${_bv}/vision_i8.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _bv_arch)
if(_bv_arch MATCHES "^(x86_64|amd64|x64)$")
  target_sources(bluelm PRIVATE ${_bv}/vision_ops_avx2.cpp)
  set_source_files_properties(${_bv}/vision_ops_avx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  target_sources(bluelm PRIVATE ${_bv}/vision_i8_avx2.cpp ${_bv}/vision_i8_avx512.cpp)
  set_source_files_properties(${_bv}/vision_i8_avx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-ffp-contract=off")
  set_source_files_properties(${_bv}/vision_i8_avx512.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni;-ffp-contract=off")
endif()
unset(_bv)
unset(_bv_arch)
