// The vision tower's hyper-parameters, read from the clip.* / bluelm.vision.*
// keys of docs/vision_format.md and checked for ranges the encoder relies on.
// Files of llama.cpp's legacy converter are read too: the layers run, the
// projection width and the tensor names they imply are resolved here, once.
#pragma once
#include <cstdint>
#include <string>

#include "core/gguf_file.h"

namespace bluelm {

enum class ProjectorType { None, Mlp, MlpDownsample };

// Which file tensor holds SigLIP's fc1 (C -> F) and fc2 (F -> C). llama.cpp's
// legacy converter wrote fc1 as 'ffn_down' and fc2 as 'ffn_up'.
enum class FfnNaming { Standard, LegacySwapped };

struct VisionConfig {
  int64_t image_size = 0;  // S: input side in pixels
  int64_t patch_size = 0;  // P: conv kernel and stride
  int64_t grid = 0;        // S / P: tokens per side
  int64_t n_tokens = 0;    // grid * grid, encoder output tokens per image
  int64_t n_embd = 0;      // C
  int64_t n_ff = 0;        // F
  int64_t n_block = 0;     // clip.vision.block_count
  int64_t n_layer = 0;     // layers run (<= n_block; docs/vision_format.md, "Layers run")
  int64_t n_head = 0;
  int64_t head_dim = 0;
  float eps = 1e-6f;
  int64_t proj_dim = 0;  // D
  ProjectorType projector = ProjectorType::Mlp;
  std::string projector_name;
  float projector_eps = 1e-5f;  // mm.input_norm (mlp_downsample)
  int64_t downsample = 1;  // tokens merged per side (2 for mlp_downsample)
  int64_t out_grid = 0;    // tokens per side after the downsampler
  int64_t n_out_tokens = 0;
  FfnNaming ffn_naming = FfnNaming::Standard;
  std::string image_newline_name;  // empty when the file has none

  static VisionConfig from_gguf(const GGUFFile& f);
};

}  // namespace bluelm
