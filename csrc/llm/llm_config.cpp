#include "llm/llm_config.h"

namespace bluelm {

namespace {
constexpr int64_t kMaxHeadDim = 512;  // kernels keep one head on the stack
}

LlmConfig LlmConfig::from_gguf(const GGUFFile& f) {
  LlmConfig c;
  c.arch = f.get_string("general.architecture", "");
  if (c.arch.empty()) f.fail("required metadata key 'general.architecture' is missing");
  if (c.arch == "llama") {
    c.rope_mode = RopeMode::Normal;
  } else if (c.arch == "qwen2") {
    c.rope_mode = RopeMode::NeoX;
    c.has_qkv_bias = true;
  } else {
    f.fail("architecture '" + c.arch + "' is not supported (supported: llama, qwen2)");
  }
  const std::string p = c.arch + ".";
  c.n_layer = f.require_int(p + "block_count");
  c.n_embd = f.require_int(p + "embedding_length");
  c.n_ff = f.require_int(p + "feed_forward_length");
  c.n_head = f.require_int(p + "attention.head_count");
  c.n_head_kv = f.get_int(p + "attention.head_count_kv", c.n_head);
  c.n_ctx_train = f.get_int(p + "context_length", 2048);
  c.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_freq_base = static_cast<float>(f.get_float(p + "rope.freq_base", 10000.0));

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
  if (!(c.rope_freq_base > 0.0f)) f.fail("rope.freq_base must be positive");

  const std::string scaling = f.get_string(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    const double factor = f.get_float(p + "rope.scaling.factor", 1.0);
    if (!(factor > 0.0)) f.fail("rope.scaling.factor must be positive");
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none") {
    f.fail("rope scaling '" + scaling + "' is not supported (supported: none, linear)");
  }
  if (f.has(p + "rope.scale_linear")) {
    const double factor = f.get_float(p + "rope.scale_linear", 1.0);
    if (!(factor > 0.0)) f.fail("rope.scale_linear must be positive");
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  }
  // n_vocab comes from the embedding tensor (checked by the weights).
  return c;
}

}  // namespace bluelm
