# The vision tower's model code (its kernels are in the kernel table:
# csrc/kernels/kernels.cmake).
set(_bv ${CMAKE_CURRENT_LIST_DIR})
target_sources(bluelm PRIVATE
  ${_bv}/vision_config.cpp
  ${_bv}/vision_weights.cpp
  ${_bv}/vision_encoder.cpp
  ${_bv}/vision_model.cpp)
unset(_bv)
