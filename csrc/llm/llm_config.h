// Decoder hyper-parameters read from llama.cpp's GGUF keys.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/gguf_file.h"
#include "llm/llm_arch.h"

namespace bluelm {

// One RoPE setting: theta_i = p * freq_scale * base^(-2i/n_rot) / factor_i, and
// cos/sin multiplied by attn_factor (LongRoPE's attention factor).
struct RopeParams {
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;  // linear scaling: positions are multiplied by this
  float attn_factor = 1.0f;
};

struct LlmConfig {
  std::string arch;
  const LlmArch* traits = nullptr;  // the architecture's table entry (llm_arch.h)
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
  RopeMode rope_mode = RopeMode::Normal;
  RopeParams rope;      // global layers
  RopeParams rope_swa;  // sliding-window layers
  // LongRoPE: long factors when the context is longer than this (rope.scaling.original_context_length)
  int64_t n_ctx_orig = 0;
  float attn_scale = 0.0f;     // multiplies Q.K (1/sqrt(head_dim) unless the arch says otherwise)
  float attn_softcap = 0.0f;   // 0: none
  float final_softcap = 0.0f;  // 0: none
  float embd_scale = 1.0f;     // token embeddings are multiplied by this
  int64_t n_swa = 0;           // sliding window (positions a query sees, itself included), 0: none
  std::vector<uint8_t> swa_layers;  // per layer: 1 = sliding window, 0 = global

  bool is_swa(int64_t layer) const { return n_swa > 0 && swa_layers[layer] != 0; }

  // Reads and checks every value; a FormatError names the key at fault.
  static LlmConfig from_gguf(const GGUFFile& f);
};

}  // namespace bluelm
