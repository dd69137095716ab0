# Every kernel source and its flags. One folder per instruction set
# (csrc/kernels/<isa>/), every .cpp file of it built with that ISA's flags;
# dispatch.cpp picks a table at run time from the CPU's features, so the rest
# of the library stays portable (never -march=native). A new file in an ISA
# folder is picked up by the globs below.
set(_bk ${CMAKE_CURRENT_LIST_DIR})

# Built with -ffp-contract=off: the int8 format (its epilogue rounds each
# product before the next add, identically on every ISA, so every table gives
# the scalar reference's bits), prompt-chunk attention (flash.cpp, the same
# reason) and the files whose figures were fixed that way.
set(_bk_no_contract
  i8_format.cpp scalar/i8.cpp avx2/i8.cpp avx512/i8.cpp avx512/vision.cpp avx512/vision_attention.cpp
  avx512/q5_x16.cpp
  neon/i8.cpp neon_dotprod/i8.cpp neon_i8mm/i8.cpp
  scalar/flash.cpp avx2/flash.cpp avx512/flash.cpp neon/flash.cpp neon_dotprod/flash.cpp)

function(_bluelm_kernel_folder folder flags)
  file(GLOB _srcs CONFIGURE_DEPENDS ${_bk}/${folder}/*.cpp)
  target_sources(bluelm PRIVATE ${_srcs})
  foreach(_src IN LISTS _srcs)
    file(RELATIVE_PATH _rel ${_bk} ${_src})
    set(_opts ${flags})
    if(_rel IN_LIST _bk_no_contract)
      list(APPEND _opts -ffp-contract=off)
    endif()
    if(_opts)
      set_source_files_properties(${_src} PROPERTIES COMPILE_OPTIONS "${_opts}")
    endif()
  endforeach()
endfunction()

target_sources(bluelm PRIVATE
  ${_bk}/dispatch.cpp
  ${_bk}/cpu_features.cpp
  ${_bk}/kernel_choice.cpp
  ${_bk}/repack.cpp
  ${_bk}/kquant_pack.cpp
  ${_bk}/i8_format.cpp)
set_source_files_properties(${_bk}/i8_format.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")  # listed above
_bluelm_kernel_folder(scalar "")

string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _bk_arch)
if(_bk_arch MATCHES "^(x86_64|amd64|x64)$")
  _bluelm_kernel_folder(avx2 "-mavx2;-mfma;-mf16c")
  _bluelm_kernel_folder(avx512 "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni")
  _bluelm_kernel_folder(avx512_bf16 "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni;-mavx512bf16")
  target_compile_definitions(bluelm PRIVATE BLUELM_KERNELS_X86=1)
elseif(_bk_arch MATCHES "^(aarch64|arm64|armv8.*)$")
  # neon/ needs only the AArch64 baseline (ASIMD, fp16<->fp32 conversions).
  _bluelm_kernel_folder(neon "")
  _bluelm_kernel_folder(neon_dotprod "-march=armv8.2-a+fp16+dotprod")
  _bluelm_kernel_folder(neon_i8mm "-march=armv8.6-a+fp16+dotprod+i8mm")
  target_compile_definitions(bluelm PRIVATE BLUELM_KERNELS_ARM=1)
endif()
unset(_bk_arch)
unset(_bk_no_contract)
unset(_bk)
