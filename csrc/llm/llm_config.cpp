#include "llm/llm_config.h"

#include <cmath>

namespace bluelm {

namespace {
constexpr int64_t kMaxHeadDim = 512;  // kernels keep one head on the stack

// Which layers slide: `{arch}.attention.sliding_window_pattern` as a per-layer
// array of flags, or a period (llama.cpp's set_swa_pattern), else the arch's period.
std::vector<uint8_t> read_swa_layers(const GGUFFile& f, const std::string& key, int64_t n_layer,
                                     int default_pattern) {
  std::vector<uint8_t> out(static_cast<size_t>(n_layer), 0);
  int64_t period = default_pattern;
  if (const GGUFValue* v = f.find(key)) {
    if (v->type == GGUFValueType::ARRAY) {
      if (!(v->elem_type == GGUFValueType::BOOL || v->elem_type == GGUFValueType::UINT8 ||
            v->elem_type == GGUFValueType::INT32 || v->elem_type == GGUFValueType::UINT32) ||
          static_cast<int64_t>(v->count) != n_layer) {
        f.fail("metadata key '" + key + "' must be " + std::to_string(n_layer) + " per-layer flags");
      }
      for (int64_t il = 0; il < n_layer; ++il) out[il] = v->array_int(il) != 0;
      return out;
    }
    period = f.get_int(key, default_pattern);
    if (period < 0 || period > n_layer + 1) f.fail("metadata key '" + key + "' = " + std::to_string(period) + " is out of range");
  }
  for (int64_t il = 0; il < n_layer; ++il) out[il] = period == 0 || il % period < period - 1;
  return out;
}

// A soft-cap key: ignored (0) by archs without one, else its value or the arch's default.
float read_softcap(const GGUFFile& f, const std::string& key, float arch_default) {
  if (arch_default < 0.0f) return 0.0f;
  const double v = f.get_float(key, arch_default);
  if (!(v >= 0.0 && v < 1e6)) f.fail("metadata key '" + key + "' is out of range");
  return static_cast<float>(v);
}
}  // namespace

LlmConfig LlmConfig::from_gguf(const GGUFFile& f) {
  LlmConfig c;
  c.arch = f.get_string("general.architecture", "");
  if (c.arch.empty()) f.fail("required metadata key 'general.architecture' is missing");
  c.traits = find_arch(c.arch);
  if (!c.traits) {
    f.fail("general.architecture '" + c.arch + "' is not supported (supported: " + supported_arch_names() + ")");
  }
  const LlmArch& a = *c.traits;
  c.rope_mode = a.rope_mode;
  const std::string p = c.arch + ".";
  c.n_layer = f.require_int(p + "block_count");
  c.n_embd = f.require_int(p + "embedding_length");
  c.n_ff = f.require_int(p + "feed_forward_length");
  c.n_head = f.require_int(p + "attention.head_count");
  c.n_head_kv = f.get_int(p + "attention.head_count_kv", c.n_head);
  c.n_ctx_train = f.get_int(p + "context_length", 2048);
  c.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5));

  auto positive = [&](const char* name, int64_t v, int64_t max) {
    if (v <= 0 || v > max) f.fail("metadata key '" + p + name + "' = " + std::to_string(v) + " is out of range");
  };
  positive("block_count", c.n_layer, 4096);
  positive("embedding_length", c.n_embd, 1 << 20);
  positive("feed_forward_length", c.n_ff, 1 << 22);
  positive("attention.head_count", c.n_head, 4096);
  positive("attention.head_count_kv", c.n_head_kv, 4096);
  positive("context_length", c.n_ctx_train, int64_t(1) << 32);
  if (c.n_head % c.n_head_kv != 0) f.fail("attention.head_count must be a multiple of attention.head_count_kv");

  c.head_dim = f.get_int(p + "attention.key_length", c.n_embd / c.n_head);
  const int64_t v_len = f.get_int(p + "attention.value_length", c.head_dim);
  if (v_len != c.head_dim) f.fail("attention.value_length different from key_length is not supported");
  if (c.head_dim <= 0 || c.head_dim > kMaxHeadDim || c.head_dim % 2 != 0) {
    f.fail("head dimension " + std::to_string(c.head_dim) + " is not supported (even, at most 512)");
  }
  c.n_rot = f.get_int(p + "rope.dimension_count", c.head_dim);
  if (c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2 != 0) f.fail("rope.dimension_count " + std::to_string(c.n_rot) + " is out of range");
  if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f)) f.fail("attention.layer_norm_rms_epsilon is out of range");

  // RoPE: base, scaling, LongRoPE's attention factor; sliding layers have their own base.
  c.rope.freq_base = static_cast<float>(f.get_float(p + "rope.freq_base", 10000.0));
  if (!(c.rope.freq_base > 0.0f)) f.fail("rope.freq_base must be positive");
  const std::string scaling_key = p + "rope.scaling.type";
  const std::string scaling = f.get_string(scaling_key, "none");
  if (scaling == "linear") {
    const double factor = f.get_float(p + "rope.scaling.factor", 1.0);
    if (!(factor > 0.0)) f.fail("rope.scaling.factor must be positive");
    c.rope.freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none" && scaling != "longrope") {
    f.fail("metadata key '" + scaling_key + "' = '" + scaling + "' is not supported (supported: none, linear, longrope)");
  }
  if (f.has(p + "rope.scale_linear")) {
    const double factor = f.get_float(p + "rope.scale_linear", 1.0);
    if (!(factor > 0.0)) f.fail("rope.scale_linear must be positive");
    c.rope.freq_scale = static_cast<float>(1.0 / factor);
  }
  c.rope.attn_factor = static_cast<float>(f.get_float(p + "rope.scaling.attn_factor", 1.0));
  if (!(c.rope.attn_factor > 0.0f && c.rope.attn_factor < 100.0f)) f.fail("rope.scaling.attn_factor is out of range");
  c.n_ctx_orig = f.get_int(p + "rope.scaling.original_context_length", c.n_ctx_train);
  if (c.n_ctx_orig <= 0) f.fail("rope.scaling.original_context_length must be positive");
  c.rope_swa = c.rope;
  c.rope_swa.freq_scale = 1.0f;  // scaling is for the global layers (gemma3)
  c.rope_swa.freq_base = static_cast<float>(
      f.get_float(p + "rope.freq_base_swa", a.swa_rope_base_default > 0.0f ? a.swa_rope_base_default : c.rope.freq_base));
  if (!(c.rope_swa.freq_base > 0.0f)) f.fail("rope.freq_base_swa must be positive");

  // Sliding-window layers.
  c.n_swa = f.get_int(p + "attention.sliding_window", a.swa_default);
  if (c.n_swa < 0) f.fail("metadata key '" + p + "attention.sliding_window' = " + std::to_string(c.n_swa) + " is out of range");
  c.swa_layers = read_swa_layers(f, p + "attention.sliding_window_pattern", c.n_layer, a.swa_pattern);

  // Attention scale: attention.scale if the file has it, else llama.cpp's rule.
  const bool big = a.big_model_layers > 0 && c.n_layer == a.big_model_layers;
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(big ? c.n_embd / c.n_head : c.head_dim));
  if (f.has(p + "attention.scale")) {
    c.attn_scale = static_cast<float>(f.get_float(p + "attention.scale", c.attn_scale));
    if (!(c.attn_scale > 0.0f && c.attn_scale < 1e3f)) f.fail("metadata key '" + p + "attention.scale' is out of range");
  }
  c.attn_softcap = read_softcap(f, p + "attn_logit_softcapping", a.attn_softcap_default);
  c.final_softcap = read_softcap(f, p + "final_logit_softcapping", a.final_softcap_default);
  c.embd_scale = a.embd_scale ? std::sqrt(static_cast<float>(c.n_embd)) : 1.0f;
  // n_vocab comes from the embedding tensor (checked by the weights).
  return c;
}

}  // namespace bluelm
