// What sets one decoder architecture apart from another, as data: the forward
// pass (decoder.cpp) is one graph whose optional steps these flags switch on.
// The facts come from llama.cpp's src/models/<arch>.cpp and llama-model.cpp.
#pragma once
#include <cstdint>
#include <string>

namespace bluelm {

enum class RopeMode { Normal, NeoX };  // adjacent pairs (llama) or split halves (qwen2, gemma, phi3)

enum class FfnActivation { SiLU, GeluTanh };  // of the gate: SwiGLU or GELU(tanh)-gated

struct LlmArch {
  const char* name;  // general.architecture
  RopeMode rope_mode;
  FfnActivation activation;
  bool qkv_bias_required;  // qwen2: attn_q/k/v.bias must be present (optional elsewhere)
  bool qk_norm;            // per-head RMSNorm of Q and K before RoPE (attn_q_norm, attn_k_norm)
  bool post_norms;         // RMSNorm of the attention and FFN outputs before the residual adds
  bool embd_scale;         // token embeddings times sqrt(n_embd)
  bool embd_scale_inputs;  // ... and input embeddings (images) too
  bool fused_allowed;      // attn_qkv and a 2*n_ff ffn_up may stand for q/k/v and gate/up
  bool rope_long_short;    // rope_factors_long/short, chosen by n_ctx (LongRoPE)
  // With a window: layer il slides unless il % swa_pattern == swa_pattern - 1
  // (llama.cpp's set_swa_pattern; 0: every layer slides).
  int swa_pattern;
  int64_t swa_default;         // window when attention.sliding_window is absent (0: none)
  float swa_rope_base_default; // rope.freq_base_swa when absent (0: rope.freq_base)
  // Soft-caps used when their keys are absent; < 0: the arch has none and ignores the key.
  float attn_softcap_default;
  float final_softcap_default;
  int64_t big_model_layers;  // gemma: this layer count scales Q by 1/sqrt(n_embd/n_head) (27B)
};

// The table entry of an architecture name, or nullptr when not supported.
const LlmArch* find_arch(const std::string& name);
// "llama, qwen2, ..." for error messages.
std::string supported_arch_names();

}  // namespace bluelm
