// The forward pass of the SigLIP encoder and projector over one batch of
// patches, with scratch buffers allocated once for the largest batch.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "vision/vision_config.h"
#include "vision/vision_weights.h"

namespace bluelm {

// n uninitialised T (new T[n]: no clearing): the encoder's scratch, each
// buffer written before it is read. A std::vector would clear ~100 MB in one
// thread each time an encoder is made; freed blocks under glibc's mmap
// threshold come back from the heap already mapped, so a later encoder
// neither faults nor clears them.
template <class T>
class Scratch {
 public:
  void resize(size_t n) {
    p_.reset(new T[n]);
    n_ = n;
  }
  T* data() { return p_.get(); }
  size_t size() const { return n_; }

 private:
  std::unique_ptr<T[]> p_;
  size_t n_ = 0;
};

class VisionEncoder {
 public:
  VisionEncoder(const VisionConfig& c, const VisionWeights& w, int64_t max_batch, int n_threads);

  // pixels: n x 3 x S x S; out: n x n_tokens x C, or n x n_out_tokens x D when project.
  void run(const float* pixels, int64_t n, bool project, float* out);

 private:
  void patch_embed(const float* pixels, int64_t n);
  void block(const VisionLayer& L, int64_t n);
  void attention(int64_t n, bool int8);
  void project_downsample(int64_t n, float* out);
  void project_mlp(int64_t n, float* out);
  // Y[m x W.rows] = X[m x W.k] . W^T (+ bias); X rows are ldx floats apart.
  void matmul(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y, const VisionVector& bias);
  // The int8 path (W.i8): activations quantised (into act_), then Y = X . W^T +
  // bias, Y += that, or Y = GELU(that).
  enum class I8Out { Store, Add, StoreGelu };
  kernels::I8Acts quantize(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m);
  // LayerNorm (w, b) of the m rows of x_ and their quantisation for W, a row at
  // a time (the normalised rows never reach memory).
  kernels::I8Acts quantize_ln(const VisionMatrix& W, int64_t m, const VisionVector& w, const VisionVector& b);
  // Y = x . W^T + bias (as `out` says) for each target, all of the same K.
  struct I8Target {
    const VisionMatrix& W;
    float* Y;
    const VisionVector& bias;
  };
  void gemm_i8(const kernels::I8Acts& xa, std::initializer_list<I8Target> targets, I8Out out);
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
  Scratch<uint8_t> act_;
  std::vector<float> act_scales_;  // int8 activations' per-token scales
  std::vector<int32_t> act_zp_;    // and zero points
  std::vector<float> pad_;         // per thread: one activation row padded to k_pad
  Scratch<float> attn_work_;     // per thread: the attention kernel's work
  int64_t max_k_pad_ = 0;
  size_t attn_floats_ = 0;  // floats of attn_work_ per thread
};

}  // namespace bluelm
