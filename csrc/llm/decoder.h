// A decoding context: the KV cache, its position, and the forward pass of the
// decoder (one graph for every arch of llm_arch.h, its optional steps switched
// by the arch's flags). Prefill runs in chunks of n_batch tokens.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "llm/llm_weights.h"

namespace bluelm {

class Context {
 public:
  // kv_type is F32, F16 or Q8_0 (INT8 per block of 32). Throws ArgumentError for invalid sizes.
  Context(std::shared_ptr<const LlmModel> model, int64_t n_ctx, int64_t n_batch, int n_threads,
          GgmlType kv_type);

  // Appends tokens at positions n_past.. and computes logits for the last token
  // (or for every token when logits_all). Token ids must be in [0, n_vocab):
  // the runtime checks them once (check_token_ids) before they get here.
  // Throws ContextOverflowError when the tokens do not fit.
  void eval(const int32_t* tokens, int64_t n, bool logits_all);
  // As eval, for n rows of n_embd floats (image embeddings) taken as the
  // input embeddings of positions n_past.. and prefilled in chunks of n_batch.
  void eval_embeddings(const float* emb, int64_t n, bool logits_all);
  // As eval_embeddings, but the logits of the last row are computed only when
  // want_logits (the prefill scheduler runs many chunks and needs one row).
  void prefill_embeddings(const float* emb, int64_t n, bool want_logits);
  // As prefill_embeddings, for token ids (their rows of token_embd, with the
  // arch's token scale: gemma3 scales token rows but not image rows).
  void prefill_tokens(const int32_t* tokens, int64_t n, bool want_logits);
  // Appends n <= n_batch tokens as one chunk, each row's bits those eval() of
  // that token alone would give (attention in the one-token order; a gemm over
  // all rows where the table's gemm is the same per token, else one token at a
  // time over blocks of weight rows): the verification of a speculative draft.
  // Its logits come after, by rows (step_logits): a draft's rows past its first
  // rejection need none.
  void eval_as_steps(const int32_t* tokens, int64_t n);
  // The logits of rows [n_logit_rows(), end) of the last eval_as_steps (end at
  // most its n), computed in one pass over the output matrix; the rows before
  // stay. Each row's bits are those of eval() of its token alone.
  void step_logits(int64_t end);
  // The greedy token (the first largest logit) of each of rows [0, end) of
  // the last eval_as_steps into tokens[0..end), the one step_logits' rows
  // give, without those logits: the output product in the table's faster
  // order (gemv_fast) screens the vocabulary and only the rows that can hold
  // the largest logit are computed exactly (llm/output_argmax.h). False, with
  // nothing written, where that route does not apply (no gemv_fast for the
  // output matrix, a final soft-cap, more than kGemvBatchMax rows,
  // non-finite values): the caller takes step_logits. Leaves no logit rows
  // (n_logit_rows() = 0); step_logits can still compute them.
  bool step_argmax(int64_t end, int32_t* tokens);

  // Logits of the last eval: n_logit_rows() rows of n_vocab floats.
  const float* logits() const { return logits_.data(); }
  int64_t n_logit_rows() const { return n_logit_rows_; }

  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_batch() const { return n_batch_; }
  int n_threads() const { return pool_.size(); }
  GgmlType kv_type() const { return kv_type_; }
  // Forgets positions >= n (the cache keeps the prefix).
  void truncate(int64_t n);
  const LlmModel& model() const { return *model_; }

 private:
  // prefill_tokens / prefill_embeddings: exactly one of tokens and emb is set.
  void prefill_rows(const int32_t* tokens, const float* emb, int64_t n, bool want_logits);
  void forward_chunk(const int32_t* tokens, int64_t m, float* logits_out, bool all_rows);
  // The logits of rows [first, first + rows) of the chunk just run (its final residual in x_).
  void output_logits(int64_t first, int64_t rows, float* out);
  // Y[m x W.rows] = X[m x W.cols] . W^T
  void matmul(const Matrix& W, const float* X, int64_t m, float* Y);
  // X's m rows in W's activation format into act_; returns the row stride.
  size_t convert_rows(const Matrix& W, const float* X, int64_t m);
  // matmul of the rows convert_rows left in act_ (stride xs).
  void matmul_converted(const Matrix& W, size_t xs, int64_t m, float* Y);
  // The gemm for m rows of this chunk: the table's gemm, or for the rows of
  // eval_as_steps one that gives each row a one-token call's bits, or nullptr
  // (then matmul_as_steps).
  kernels::GemmFn rows_gemm(const Matrix& W, int64_t m) const;
  // matmul for eval_as_steps where the gemm is not the same per token: each
  // token through the one-token gemm.
  void matmul_as_steps(const Matrix& W, const uint8_t* act, size_t xs, int64_t m, float* Y);
  // Several products of one input (q/k/v, gate/up): one conversion of X, then
  // one pool job for all of them (decode, a draft's rows) or one each (prompts).
  void matmul_shared_input(const Matrix* const* Ws, float* const* Ys, int n, const float* X, int64_t m);
  // One pool job for n products of the converted rows act (row stride xs),
  // gemm[i] for product i: their rows end to end, each thread on its share,
  // then on the rest of the others' (ThreadPool::run_shared).
  void run_products(const Matrix* const* Ws, float* const* Ys, const kernels::GemmFn* gemm, int n,
                    const uint8_t* act, size_t xs, int64_t m);
  // Decode: each thread's first part of the next job over these products
  // (the split matmul and matmul_shared_input make), for the pool to read
  // into the thread's cache while it waits between jobs (ThreadPool::set_warm).
  void warm_next(std::initializer_list<const Matrix*> Ws);
  // Rows [t0, t1) of a chunk (row t at offset t * width).
  void rms_norm(const float* x, const Vector& w, int64_t t0, int64_t t1, float* y) const;
  // RoPE with table `set` (0: global layers, 1: sliding-window layers).
  void rope(float* x, int64_t t0, int64_t t1, int64_t n_heads, int set) const;
  // cos/sin of the chunk's positions for one RoPE setting.
  void rope_table(const RopeParams& rp, int set, int64_t t0, int64_t t1);
  void attention(int layer, int64_t m);
  // A prompt chunk's attention by the flash kernel (kernels.h attend_chunk); kc/vc
  // are the layer's caches, window the sliding window (0: none).
  void attention_chunk(const uint8_t* kc, const uint8_t* vc, int64_t m, int64_t window);
  // eval_as_steps' rows through kt_.attend_steps: each KV head's cache rows read once per call.
  void attention_steps(const uint8_t* kc, const uint8_t* vc, int64_t m, int64_t window);
  kernels::ChunkAttention chunk_attention(int64_t window);  // the fields both share
  // The positions a chunk's rows see, per KV head, in attend_chunk_bf16's form
  // (kernels.h ChunkKv), converted once over the pool; `first` is even.
  void convert_chunk_kv(const uint8_t* kc, const uint8_t* vc, int64_t first, int64_t n_kv);
  // logits = cap * tanh(logits / cap) (gemma2's final soft-cap), rows of n_vocab.
  void softcap_logits(float* logits, int64_t rows);
  // Whether a chunk's per-row work (norms, RoPE, conversions) runs inline: one
  // token, or the few rows of a draft, where a pool job costs more than the work.
  bool inline_rows(int64_t m) const { return m < 2 || (as_steps_ && m <= kernels::kGemvBatchMax); }
  // fn(t0, t1) over the rows of a chunk: on the pool for a prompt chunk (the
  // per-row work is identical either way), inline where inline_rows.
  template <typename Fn>
  void for_rows(int64_t m, Fn&& fn) {
    if (inline_rows(m)) fn(int64_t(0), m);
    else pool_.parallel_for(m, 1, fn);
  }

  std::shared_ptr<const LlmModel> model_;
  const LlmConfig& cfg_;
  const kernels::KernelTable& kt_;
  int64_t n_ctx_, n_batch_;
  GgmlType kv_type_;
  ThreadPool pool_;
  int64_t n_past_ = 0;
  const float* input_emb_ = nullptr;  // set by eval_embeddings for the chunk being run
  bool as_steps_ = false;             // set by eval_as_steps for the chunk being run

  // KV cache: per layer, n_ctx rows of n_head_kv * head_dim values of kv_type.
  // calloc'd: the OS maps its pages as positions are first written, so an
  // n_ctx the prompt does not fill costs no resident memory.
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  size_t kv_row_bytes_;  // one position of one layer: n_head_kv * head_dim values
  size_t kv_layer_bytes_;  // n_ctx positions of one layer
  std::unique_ptr<uint8_t, FreeDeleter> k_cache_, v_cache_;

  // Chunk buffers sized for n_batch tokens, allocated once.
  std::vector<float> x_, h_, q_, k_, v_, attn_, gate_, up_;
  std::vector<uint8_t> act_;            // activations in the kernel's input format
  std::vector<float> rope_cos_, rope_sin_;  // per set (global, sliding), per token, per rotated pair
  int n_rope_sets_ = 1;
  const float* rope_factors_ = nullptr;      // per rotated pair, or nullptr
  std::vector<float> scratch_;          // per thread, 4 x n_ctx scores
  std::vector<float> step_scratch_;     // per thread, attend_steps' scores (sized at first use)
  std::vector<uint8_t> flash_work_;     // per thread, flash_work_bytes_ (64-byte aligned)
  size_t flash_work_bytes_ = 0;
  // attend_chunk_bf16's K/V per KV head (n_ctx positions each), allocated on
  // its first use; calloc'd, so positions never reached cost no memory.
  std::unique_ptr<uint8_t, FreeDeleter> chunk_kv_buf_;
  std::vector<kernels::ChunkKv> chunk_kv_;
  std::vector<float> logits_;
  std::vector<ThreadPool::Warm> warm_;  // warm_next's spans, per thread
  int64_t n_logit_rows_ = 0;
  int64_t step_rows_ = 0;  // rows of the last eval_as_steps (step_logits' limit)
  float out_max_dw_ = -1.0f;  // the output matrix's largest block scale (step_argmax), once known
  std::vector<std::vector<int64_t>> argmax_rows_;  // step_argmax's candidate rows, per thread
};

}  // namespace bluelm
