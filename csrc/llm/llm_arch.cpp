#include "llm/llm_arch.h"

namespace bluelm {

namespace {

using A = FfnActivation;
using R = RopeMode;

// name, rope, activation, qkv_bias_required, qk_norm, post_norms, embd_scale,
// embd_scale_inputs, fused_allowed, rope_long_short, swa_pattern, swa_default,
// swa_rope_base_default, attn_softcap_default, final_softcap_default, big_model_layers
constexpr LlmArch kArchs[] = {
    // llama, mistral, BlueLM (its embedding LayerNorm folded into token_embd by the converter)
    {"llama", R::Normal, A::SiLU, false, false, false, false, false, false, false, 0, 0, 0.0f, -1.0f, -1.0f, 0},
    {"qwen2", R::NeoX, A::SiLU, true, false, false, false, false, false, false, 0, 0, 0.0f, -1.0f, -1.0f, 0},
    {"qwen3", R::NeoX, A::SiLU, false, true, false, false, false, false, false, 0, 0, 0.0f, -1.0f, -1.0f, 0},
    // gemma2: even layers slide over 4096 positions, soft-caps 50 (attention) and 30 (logits)
    {"gemma2", R::NeoX, A::GeluTanh, false, false, true, true, true, false, false, 2, 4096, 0.0f, 50.0f, 30.0f, 46},
    // gemma3: five sliding layers (base 10000), then one global; image embeddings are not scaled
    {"gemma3", R::NeoX, A::GeluTanh, false, true, true, true, false, false, false, 6, 0, 10000.0f, -1.0f, 0.0f, 62},
    // phi3: every layer slides when the file has a window (llama.cpp ignores it; transformers does not)
    {"phi3", R::NeoX, A::SiLU, false, false, false, false, false, true, true, 0, 0, 0.0f, -1.0f, -1.0f, 0},
};

}  // namespace

const LlmArch* find_arch(const std::string& name) {
  for (const LlmArch& a : kArchs) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

std::string supported_arch_names() {
  std::string s;
  for (const LlmArch& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

}  // namespace bluelm
