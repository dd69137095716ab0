// Decoder hyper-parameters read from llama.cpp's GGUF keys.
#pragma once
#include <cstdint>
#include <string>

#include "core/gguf_file.h"

namespace bluelm {

enum class RopeMode { Normal, NeoX };  // adjacent pairs (llama) or split halves (qwen2)

struct LlmConfig {
  std::string arch;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_rot = 0;  // rotated dimensions per head
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear scaling: positions are multiplied by this
  RopeMode rope_mode = RopeMode::Normal;
  bool has_qkv_bias = false;

  // Reads and checks every value; a FormatError names the key at fault.
  static LlmConfig from_gguf(const GGUFFile& f);
};

}  // namespace bluelm
