// The decoder's tensors, bound by llama.cpp's names and checked against the
// config. Weights stay in their stored format inside the file mapping.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf_file.h"
#include "core/huge_pages.h"
#include "llm/llm_config.h"

namespace bluelm {

// A row-major matrix of `rows` rows of `cols` elements (ggml ne1 x ne0).
struct Matrix {
  const void* data = nullptr;
  GgmlType type = GgmlType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_stride = 0;  // bytes
  // Rows per interleaved group when repacked for the active kernels (see
  // kernels/repack.h), 0 for the file layout; row() is valid only when 0.
  int packed_rows = 0;
  const char* row(int64_t r) const { return static_cast<const char*>(data) + r * row_stride; }
  // Bytes a product with it reads (an absent matrix: none).
  size_t bytes() const { return data ? row_stride * static_cast<size_t>(rows) : 0; }
};

// A 1-D F32 vector (norm weights, biases).
struct Vector {
  const float* data = nullptr;
  int64_t n = 0;
};

// Optional tensors are empty (data == nullptr) when the arch has none. Fused
// files (phi3's attn_qkv and 2*n_ff ffn_up) are bound as row ranges of one
// tensor, so wq/wk/wv and w_gate/w_up are views either way.
struct LayerWeights {
  Vector attn_norm, ffn_norm;
  Matrix wq, wk, wv, wo;
  Vector bq, bk, bv;                  // q/k/v biases (qwen2; optional for llama)
  Vector q_norm, k_norm;              // per-head RMSNorm before RoPE (qwen3, gemma3)
  Vector attn_post_norm, ffn_post_norm;  // before the residual adds (gemma2/3)
  Matrix w_gate, w_up, w_down;
};

class LlmModel {
 public:
  // repack: interleave quantised weights for the active kernels (BLUELM_REPACK=0
  // in the environment turns it off, for comparisons).
  explicit LlmModel(const std::string& path, bool repack = true);

  const GGUFFile& file() const { return *file_; }
  const LlmConfig& config() const { return config_; }

  Matrix token_embd;
  Vector output_norm;
  Matrix output;  // the token embedding when tied
  // RoPE frequency divisors per rotated pair (rope_freqs: llama 3, BlueLM's
  // ntkmixed); LongRoPE's pair (phi3) is chosen per context. Empty means all 1.
  std::vector<float> rope_freq_factors;
  std::vector<float> rope_factors_long, rope_factors_short;
  // The divisors for a context of n_ctx positions (nullptr: none).
  const float* rope_factors(int64_t n_ctx) const;
  std::vector<LayerWeights> layers;
  uint64_t weight_bytes = 0;  // bytes of matrices read per token (roofline)
  uint64_t packed_bytes = 0;  // bytes repacked into owned memory at load

 private:
  // Rows per group the active kernels want m repacked in, 0 for none.
  static int pack_rows_for(const Matrix& m);
  // Copies m into `dst` in that layout and releases the file's pages of it, so
  // resident memory holds one copy.
  void repack(Matrix& m, uint8_t* dst);

  std::unique_ptr<GGUFFile> file_;
  LlmConfig config_;
  std::unique_ptr<uint8_t, HugeFree> packed_;  // one arena of all repacked weights
};

}  // namespace bluelm
