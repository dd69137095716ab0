// The forward pass of the SigLIP encoder and projector over one batch of
// patches, with scratch buffers allocated once for the largest batch.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/huge_pages.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "vision/vision_config.h"
#include "vision/vision_weights.h"

namespace bluelm {

// n uninitialised T (no clearing): the encoder's scratch, each buffer written
// before it is read (a std::vector would clear ~100 MB in one thread each time
// an encoder is made). On huge pages (core/huge_pages.h): the gemms sweep these
// activations once per group of weight panels; with 4 KiB pages this and the
// panels cost the so400m encoder about 5% (ARCHITECTURE.md). Pages fault in as first written.
template <class T>
class Scratch {
  static_assert(std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>);

 public:
  void resize(size_t n) {
    p_.reset(static_cast<T*>(alloc_huge(n * sizeof(T))));
    n_ = n;
  }
  T* data() { return p_.get(); }
  size_t size() const { return n_; }

 private:
  std::unique_ptr<T, HugeFree> p_;
  size_t n_ = 0;
};

class VisionEncoder {
 public:
  VisionEncoder(const VisionConfig& c, const VisionWeights& w, int64_t max_batch, int n_threads);

  // pixels: n x 3 x S x S; out: n x n_tokens x C, or n x n_out_tokens x D when project.
  void run(const float* pixels, int64_t n, bool project, float* out);

 private:
  using ChunkDone = std::function<void(int ith, int64_t t0, int64_t n)>;  // gemm_i8's
  void patch_embed(const float* pixels, int64_t n);
  void block(const VisionLayer& L, int64_t n);
  // A layer whose matrices are all int8: each pass that quantises rows for
  // the next matmul (LayerNorm'd x_, attention out, GELU out) runs on a chunk
  // of rows as soon as the step before has finished them, by the thread that
  // finished them, beside the other threads' matmul work; so the memory-bound
  // passes overlap compute-bound ones instead of running as jobs of their own.
  // ln1: LayerNorm 1 still to do (else the layer before did it); next: the
  // int8 layer after, whose LayerNorm 1 the ffn_down gemm does.
  void block_i8(const VisionLayer& L, int64_t n, bool ln1, const VisionLayer* next);
  static bool all_i8(const VisionLayer& L);
  // done (as gemm_i8's): an image's rows once its heads are all written.
  void attention(int64_t n, bool int8, const ChunkDone& done = nullptr);
  void project_downsample(int64_t n, float* out);
  void project_mlp(int64_t n, float* out);
  // Y[m x W.rows] = X[m x W.k] . W^T (+ bias); X rows are ldx floats apart.
  void matmul(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y, const VisionVector& bias);
  // The int8 path (W.i8): activations quantised (into act_), then Y = X . W^T +
  // bias, Y += that, or Y = GELU(that).
  enum class I8Out { Store, Add, StoreGelu };
  // Quantised activations: rows of i8_act_stride(kp) bytes, a scale and a zero point per token.
  struct ActBuf {
    Scratch<uint8_t> q;
    std::vector<float> scale;
    std::vector<int32_t> zp;
    void resize(size_t row_bytes, size_t rows);
    kernels::I8Acts view(const VisionMatrix& W, int64_t m);
  };
  kernels::I8Acts quantize(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m);
  // Rows [t0, t1) of X (ldx floats apart) quantised for W into act_, on the calling thread.
  void quantize_rows(const VisionMatrix& W, const float* X, int64_t ldx, int64_t t0, int64_t t1);
  // LayerNorm (w, b) of the m rows of x_ and their quantisation for W into
  // `into`, a row at a time (the normalised rows never reach memory).
  kernels::I8Acts quantize_ln(const VisionMatrix& W, int64_t m, const VisionVector& w, const VisionVector& b,
                              ActBuf& into);
  // Rows [t0, t1) of that, on the calling thread ith.
  void quantize_ln_rows(const VisionMatrix& W, const VisionVector& w, const VisionVector& b, ActBuf& into, int ith,
                        int64_t t0, int64_t t1);
  // Y = x . W^T + bias (as `out` says) for each target, all of the same K.
  struct I8Target {
    const VisionMatrix& W;
    float* Y;
    const VisionVector& bias;
  };
  // done(ith, t0, n): rows [t0, t0 + n) of the outputs are all written; on
  // thread ith. Called once per token chunk by the thread that finishes the
  // chunk's last item, while the other threads go on with the next chunk's
  // items; the last chunk, which nothing would overlap, is split over the
  // threads after the job.
  void gemm_i8(const kernels::I8Acts& xa, std::initializer_list<I8Target> targets, I8Out out,
               const ChunkDone& done = nullptr);
  // Items finished per chunk: last(c) is true for the one that finishes chunk c
  // (acq_rel: every item's writes are visible to that thread).
  class ChunkCounter {
   public:
    ChunkCounter(int64_t chunks, int64_t items);
    bool last(int64_t c);

   private:
    std::unique_ptr<std::atomic<int64_t>[]> count_;
    int64_t items_;
  };
  void then_in_parallel(const ChunkDone& done, int64_t t0, int64_t t1);  // done over rows [t0, t1), split
  void matmul_i8(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y, const VisionVector& bias,
                 I8Out out);
  // Y += X . W^T + bias (tmp: m x W.rows scratch for the non-int8 paths).
  void matmul_add(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y, const VisionVector& bias,
                  float* tmp);
  void layer_norm(const float* x, int64_t m, int64_t d, const VisionVector& w, const VisionVector& b, float eps,
                  float* y);

  const VisionConfig& c_;
  const VisionWeights& w_;
  const kernels::KernelTable& kt_;
  const kernels::VisionKernels& vk_;  // kt_.vision
  ThreadPool pool_;
  int64_t max_batch_;  // patches the scratch buffers hold
  Scratch<float> x_, h_, q_, k_, v_, big_, proj_;
  ActBuf act_;  // int8 activations
  // block_i8's LayerNorm'd rows (Q/K/V's and up's input), apart from act_ (the
  // o and down projections' input): each is written while a gemm reads the other.
  ActBuf ln_act_;
  std::vector<float> pad_;         // per thread: one activation row padded to k_pad
  Scratch<float> attn_work_;     // per thread: the attention kernel's work
  int64_t max_k_pad_ = 0;
  size_t attn_floats_ = 0;  // floats of attn_work_ per thread
};

}  // namespace bluelm
