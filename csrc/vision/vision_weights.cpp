#include "vision/vision_weights.h"

#include <algorithm>

#include "kernels/kernels.h"

namespace bluelm {

class VisionBinder {
 public:
  VisionBinder(const GGUFFile& f, VisionWeights& w) : f_(f), w_(w) {}

  const GGUFTensor* find(const std::string& name, bool required) const {
    const GGUFTensor* t = f_.find_tensor(name);
    if (!t && required) f_.fail("required tensor '" + name + "' is missing");
    return t;
  }

  // A [rows, k] matrix; the conv weight [C, 3, P, P] is read as [C, 3*P*P].
  VisionMatrix matrix(const std::string& name, int64_t rows, int64_t k) {
    const GGUFTensor* t = find(name, true);
    if (t->ne[0] * (t->n_dims > 2 ? t->ne[1] * t->ne[2] : 1) != k || t->ne[t->n_dims > 2 ? 3 : 1] != rows ||
        (t->n_dims != 2 && t->n_dims != 4)) {
      f_.fail("tensor '" + name + "' has shape " + t->shape_string() + ", expected " + std::to_string(rows) +
              " rows of " + std::to_string(k));
    }
    const GgmlType type = static_cast<GgmlType>(t->type);
    if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16 && type != GgmlType::Q8_0) {
      f_.fail("tensor '" + name + "' has type " + type_name(t->type) + " (vision weights must be F32, F16, BF16 or Q8_0)");
    }
    VisionMatrix m;
    m.type = type;
    m.rows = rows;
    m.k = k;
    m.k_pad = k;
    m.row_stride = row_bytes(type, k);
    m.data = t->data;
    if (w_.main_type == GgmlType::Q8_0 && (type == GgmlType::Q8_0 || k % QK != 0)) {
      pack_i8(m);
    }
    return m;
  }

  // F32 in place; F16/BF16 (the legacy converter's position embeddings)
  // widened once into memory this object owns.
  VisionVector vector(const std::string& name, int64_t n, bool required = true) const {
    VisionVector v;
    const GGUFTensor* t = find(name, required);
    if (!t) return v;
    if (t->n_elements() != n) {
      f_.fail("tensor '" + name + "' has shape " + t->shape_string() + ", expected " + std::to_string(n) + " elements");
    }
    const GgmlType type = static_cast<GgmlType>(t->type);
    v.n = n;
    if (type == GgmlType::F16 || type == GgmlType::BF16) {
      auto wide = std::make_unique<std::vector<float>>(static_cast<size_t>(n));
      dequantize_row(type, t->data, wide->data(), n);
      v.data = wide->data();
      w_.widened_.push_back(std::move(wide));
      return v;
    }
    if (type != GgmlType::F32) {
      f_.fail("tensor '" + name + "' has type " + type_name(t->type) + ", expected F32 (or F16, BF16)");
    }
    if (reinterpret_cast<uintptr_t>(t->data) % alignof(float) != 0) f_.fail("tensor '" + name + "' data is misaligned");
    v.data = reinterpret_cast<const float*>(t->data);
    return v;
  }

 private:
  // Any rows -> int8 panels with one scale per row (kernels/i8_format.h), in
  // the layout the active kernel table reads.
  void pack_i8(VisionMatrix& m) {
    auto p = std::make_unique<kernels::I8Packed>();
    kernels::i8_alloc(*p, m.rows, m.k, kernels::active().vision.i8_layout);
    constexpr int64_t kRows = kernels::kI8Panel;
    std::vector<float> rows(static_cast<size_t>(kRows * m.k));
    const uint8_t* src = static_cast<const uint8_t*>(m.data);
    for (int64_t r0 = 0; r0 < m.rows; r0 += kRows) {
      const int64_t r1 = std::min(m.rows, r0 + kRows);
      for (int64_t r = r0; r < r1; ++r) dequantize_row(m.type, src + r * m.row_stride, rows.data() + (r - r0) * m.k, m.k);
      kernels::i8_pack_rows(*p, m.k, r0, r1, rows.data(), m.k);
    }
    // The encoder reads only the panels: drop the file's pages of this tensor
    // from the resident set (they are clean file pages of a read-only mapping).
    f_.release_pages(src, m.row_stride * static_cast<size_t>(m.rows));
    m.i8 = p->view();
    m.k_pad = m.i8.kp;
    w_.packed_.push_back(std::move(p));
  }

  const GGUFFile& f_;
  VisionWeights& w_;
};

VisionWeights::VisionWeights(const GGUFFile& f, const VisionConfig& c) {
  VisionBinder b(f, *this);
  const GGUFTensor* q0 = b.find("v.blk.0.attn_q.weight", true);
  main_type = static_cast<GgmlType>(q0->type);
  const int64_t C = c.n_embd, F = c.n_ff, D = c.proj_dim, P = c.patch_size;
  patch_embd = b.matrix("v.patch_embd.weight", C, 3 * P * P);
  patch_bias = b.vector("v.patch_embd.bias", C);
  pos_embd = b.vector("v.position_embd.weight", c.n_tokens * C);
  const bool swapped = c.ffn_naming == FfnNaming::LegacySwapped;
  const std::string fc1 = swapped ? "ffn_down" : "ffn_up", fc2 = swapped ? "ffn_up" : "ffn_down";
  layers.resize(c.n_layer);  // the layers run; a file may hold more
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "v.blk." + std::to_string(i) + ".";
    VisionLayer& L = layers[i];
    L.ln1_w = b.vector(p + "ln1.weight", C);
    L.ln1_b = b.vector(p + "ln1.bias", C);
    L.ln2_w = b.vector(p + "ln2.weight", C);
    L.ln2_b = b.vector(p + "ln2.bias", C);
    L.wq = b.matrix(p + "attn_q.weight", C, C);
    L.wk = b.matrix(p + "attn_k.weight", C, C);
    L.wv = b.matrix(p + "attn_v.weight", C, C);
    L.wo = b.matrix(p + "attn_out.weight", C, C);
    L.bq = b.vector(p + "attn_q.bias", C);
    L.bk = b.vector(p + "attn_k.bias", C);
    L.bv = b.vector(p + "attn_v.bias", C);
    L.bo = b.vector(p + "attn_out.bias", C);
    L.up = b.matrix(p + fc1 + ".weight", F, C);
    L.b_up = b.vector(p + fc1 + ".bias", F);
    L.down = b.matrix(p + fc2 + ".weight", C, F);
    L.b_down = b.vector(p + fc2 + ".bias", C);
  }
  post_ln_w = b.vector("v.post_ln.weight", C, false);
  post_ln_b = b.vector("v.post_ln.bias", C, post_ln_w.data != nullptr);
  if (c.projector == ProjectorType::None) return;
  const int64_t in = c.projector == ProjectorType::MlpDownsample ? 4 * C : C;
  if (c.projector == ProjectorType::MlpDownsample) {
    mm_norm_w = b.vector("mm.input_norm.weight", in);
    mm_norm_b = b.vector("mm.input_norm.bias", in);
  }
  mm0 = b.matrix("mm.0.weight", D, in);
  mm0_b = b.vector("mm.0.bias", D);
  mm2 = b.matrix("mm.2.weight", D, D);
  mm2_b = b.vector("mm.2.bias", D);
  if (!c.image_newline_name.empty()) image_newline = b.vector(c.image_newline_name, D);
}

}  // namespace bluelm
