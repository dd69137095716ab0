#include "llm/llm_weights.h"

#include <cstdlib>
#include <cstring>
#include <set>

#include "kernels/kernel_choice.h"
#include "kernels/kernels.h"
#include "kernels/kquant_pack.h"
#include "kernels/repack.h"

namespace bluelm {

namespace {

class Binder {
 public:
  Binder(const GGUFFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}

  const GGUFTensor* find(const std::string& name, bool required) const {
    const GGUFTensor* t = f_.find_tensor(name);
    if (!t && required) f_.fail("required tensor '" + name + "' is missing");
    return t;
  }

  // `keys`: the metadata keys (after "<arch>.") the expected shape comes from, for the error.
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols, const char* keys,
                bool required = true) const {
    Matrix m;
    const GGUFTensor* t = find(name, required);
    if (!t) return m;
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows) {
      f_.fail("tensor '" + name + "' has shape " + t->shape_string() + ", expected [" +
              std::to_string(cols) + ", " + std::to_string(rows) + "]" + from(keys));
    }
    const GgmlType type = static_cast<GgmlType>(t->type);
    if (kernels::weight_slot(type) < 0) {
      f_.fail("tensor '" + name + "' has type " + type_name(t->type) +
              ", which this runtime cannot multiply (supported: " + supported_type_names() + ")");
    }
    if (is_block_type(type)) {
      // A non-finite scale would turn every logit into NaN; one pass over the
      // block headers at load names the tensor instead.
      const int64_t nb = static_cast<int64_t>(t->nbytes / type_info(t->type)->block_bytes);
      const int64_t bad = first_nonfinite_block(type, t->data, nb);
      if (bad >= 0) {
        f_.fail("tensor '" + name + "' (" + type_name(t->type) + ") has a non-finite scale in block " +
                std::to_string(bad) + " of " + std::to_string(nb));
      }
      // The scan mapped the pages; let them go, so that repacking (which copies one
      // matrix at a time) still never holds two copies of the weights.
      f_.release_pages(t->data, t->nbytes);
    }
    used_.insert(name);
    m.data = t->data;
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    m.row_stride = row_bytes(type, cols);
    return m;
  }

  Vector vector(const std::string& name, int64_t n, const char* keys, bool required = true) const {
    Vector v;
    const GGUFTensor* t = find(name, required);
    if (!t) return v;
    if (t->n_elements() != n || t->ne[0] != n) {
      f_.fail("tensor '" + name + "' has shape " + t->shape_string() + ", expected [" + std::to_string(n) + "]" +
              from(keys));
    }
    if (static_cast<GgmlType>(t->type) != GgmlType::F32) {
      f_.fail(std::string("tensor '") + name + "' has type " + type_name(t->type) + ", expected F32");
    }
    if (reinterpret_cast<uintptr_t>(t->data) % alignof(float) != 0) f_.fail("tensor '" + name + "' data is misaligned");
    used_.insert(name);
    v.data = reinterpret_cast<const float*>(t->data);
    v.n = n;
    return v;
  }

  // A tensor this arch does not read means the file is for another model:
  // refuse it rather than run a different network. Vision tensors (v.*, mm.*)
  // of a combined file belong to the vision encoder.
  void check_all_used(const std::string& arch) const {
    for (const GGUFTensor& t : f_.tensors()) {
      if (used_.count(t.name) || t.name.rfind("v.", 0) == 0 || t.name.rfind("mm.", 0) == 0) continue;
      f_.fail("tensor '" + t.name + "' is not part of a '" + arch + "' decoder");
    }
  }

 private:
  // " (from llama.embedding_length, ...)" for keys "embedding_length, ..."
  std::string from(const char* keys) const {
    std::string out, k = keys;
    size_t pos = 0;
    while (pos < k.size()) {
      size_t end = k.find(", ", pos);
      if (end == std::string::npos) end = k.size();
      out += (out.empty() ? " (from " : ", ") + arch_ + "." + k.substr(pos, end - pos);
      pos = end + 2;
    }
    return out.empty() ? out : out + ")";
  }

  const GGUFFile& f_;
  std::string arch_;
  mutable std::set<std::string> used_;
};

// Where the expected sizes of the attention and FFN tensors come from.
constexpr const char* kQKeys = "attention.head_count, attention.key_length, embedding_length";
constexpr const char* kKvKeys = "attention.head_count_kv, attention.key_length, embedding_length";
constexpr const char* kQkvKeys =
    "attention.head_count, attention.head_count_kv, attention.key_length, embedding_length";
constexpr const char* kFfKeys = "feed_forward_length, embedding_length";

// Rows [r0, r0 + rows) of m as a matrix of its own.
Matrix row_range(const Matrix& m, int64_t r0, int64_t rows) {
  Matrix v = m;
  v.data = m.row(r0);
  v.rows = rows;
  return v;
}

std::vector<float> copy_of(const Vector& v) { return v.data ? std::vector<float>(v.data, v.data + v.n) : std::vector<float>(); }

}  // namespace

int LlmModel::pack_rows_for(const Matrix& m) {
  return m.data ? kernels::pack_rows_for(kernels::active(), m.type, m.rows) : 0;
}

void LlmModel::repack(Matrix& m, uint8_t* dst) {
  const int R = pack_rows_for(m);
  const size_t n = m.row_stride * static_cast<size_t>(m.rows);
  const kernels::PackFn pack = kernels::active().pack[kernels::weight_slot(m.type)];
  if (pack) pack(m.data, dst, m.row_stride, m.rows);
  else kernels::repack_rows(m.data, dst, m.row_stride, type_info(uint32_t(m.type))->block_bytes, m.rows, R);
  file_->release_pages(m.data, n);
  m.data = dst;
  m.packed_rows = R;
  packed_bytes += n;
}

const float* LlmModel::rope_factors(int64_t n_ctx) const {
  if (!rope_freq_factors.empty()) return rope_freq_factors.data();
  if (rope_factors_long.empty()) return nullptr;
  // As llama.cpp: the long factors when the context exceeds the original one.
  return n_ctx > config_.n_ctx_orig ? rope_factors_long.data() : rope_factors_short.data();
}

LlmModel::LlmModel(const std::string& path, bool repack_weights)
    : file_(std::make_unique<GGUFFile>(path)), config_(LlmConfig::from_gguf(*file_)) {
  const GGUFFile& f = *file_;
  LlmConfig& c = config_;
  Binder b(f, c.arch);

  const GGUFTensor* emb = b.find("token_embd.weight", true);
  if (emb->n_dims != 2 || emb->ne[0] != c.n_embd) {
    f.fail("tensor 'token_embd.weight' has shape " + emb->shape_string() + ", expected [" + std::to_string(c.n_embd) + ", n_vocab]");
  }
  c.n_vocab = emb->ne[1];
  if (c.n_vocab > (int64_t(1) << 31) - 1) f.fail("vocabulary is too large");
  const int64_t declared = f.get_int(c.arch + ".vocab_size", c.n_vocab);
  if (declared != c.n_vocab) f.fail(c.arch + ".vocab_size = " + std::to_string(declared) + " disagrees with token_embd.weight (" + std::to_string(c.n_vocab) + " rows)");
  token_embd = b.matrix("token_embd.weight", c.n_vocab, c.n_embd, "vocab_size, embedding_length");
  output_norm = b.vector("output_norm.weight", c.n_embd, "embedding_length");
  output = b.matrix("output.weight", c.n_vocab, c.n_embd, "vocab_size, embedding_length", false);
  if (!output.data) output = token_embd;

  const LlmArch& a = *c.traits;
  rope_freq_factors = copy_of(b.vector("rope_freqs.weight", c.n_rot / 2, "rope.dimension_count", false));
  if (a.rope_long_short) {
    rope_factors_long = copy_of(b.vector("rope_factors_long.weight", c.n_rot / 2, "rope.dimension_count", false));
    rope_factors_short = copy_of(b.vector("rope_factors_short.weight", c.n_rot / 2, "rope.dimension_count", false));
    if (rope_factors_long.empty() != rope_factors_short.empty()) {
      f.fail("tensors 'rope_factors_long.weight' and 'rope_factors_short.weight' must come together");
    }
  }
  for (const std::vector<float>* v : {&rope_freq_factors, &rope_factors_long, &rope_factors_short}) {
    for (float x : *v) {
      if (!(x > 0.0f && x < 1e30f)) f.fail("a RoPE frequency factor is not a positive number");
    }
  }

  const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;
  layers.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = layers[i];
    L.attn_norm = b.vector(p + "attn_norm.weight", c.n_embd, "embedding_length");
    L.ffn_norm = b.vector(p + "ffn_norm.weight", c.n_embd, "embedding_length");
    if (a.fused_allowed && b.find(p + "attn_qkv.weight", false)) {
      const Matrix qkv = b.matrix(p + "attn_qkv.weight", q_dim + 2 * kv_dim, c.n_embd, kQkvKeys);
      L.wq = row_range(qkv, 0, q_dim);
      L.wk = row_range(qkv, q_dim, kv_dim);
      L.wv = row_range(qkv, q_dim + kv_dim, kv_dim);
    } else {
      L.wq = b.matrix(p + "attn_q.weight", q_dim, c.n_embd, kQKeys);
      L.wk = b.matrix(p + "attn_k.weight", kv_dim, c.n_embd, kKvKeys);
      L.wv = b.matrix(p + "attn_v.weight", kv_dim, c.n_embd, kKvKeys);
    }
    L.wo = b.matrix(p + "attn_output.weight", c.n_embd, q_dim, kQKeys);
    if (a.fused_allowed && !b.find(p + "ffn_gate.weight", false)) {
      const Matrix up = b.matrix(p + "ffn_up.weight", 2 * c.n_ff, c.n_embd, kFfKeys);  // gate rows, then up rows
      L.w_gate = row_range(up, 0, c.n_ff);
      L.w_up = row_range(up, c.n_ff, c.n_ff);
    } else {
      L.w_gate = b.matrix(p + "ffn_gate.weight", c.n_ff, c.n_embd, kFfKeys);
      L.w_up = b.matrix(p + "ffn_up.weight", c.n_ff, c.n_embd, kFfKeys);
    }
    L.w_down = b.matrix(p + "ffn_down.weight", c.n_embd, c.n_ff, kFfKeys);
    // Biases are optional for llama and expected for qwen2.
    L.bq = b.vector(p + "attn_q.bias", q_dim, kQKeys, a.qkv_bias_required);
    L.bk = b.vector(p + "attn_k.bias", kv_dim, kKvKeys, a.qkv_bias_required);
    L.bv = b.vector(p + "attn_v.bias", kv_dim, kKvKeys, a.qkv_bias_required);
    if (a.qk_norm) {
      L.q_norm = b.vector(p + "attn_q_norm.weight", c.head_dim, "attention.key_length");
      L.k_norm = b.vector(p + "attn_k_norm.weight", c.head_dim, "attention.key_length");
    }
    if (a.post_norms) {
      L.attn_post_norm = b.vector(p + "post_attention_norm.weight", c.n_embd, "embedding_length");
      L.ffn_post_norm = b.vector(p + "post_ffw_norm.weight", c.n_embd, "embedding_length");
    }
    weight_bytes += L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + L.w_gate.bytes() +
                    L.w_up.bytes() + L.w_down.bytes();
  }
  weight_bytes += output.bytes();
  b.check_all_used(c.arch);

  const char* env = std::getenv("BLUELM_REPACK");
  if (env && std::strcmp(env, "0") == 0) repack_weights = false;
  if (!repack_weights) return;
  // The embedding is read by row (token lookup), so it stays put; a tied output
  // stays with it, except for the K-quant types, whose file-layout kernels
  // interleave rows per call: their output gets its own packed copy (the
  // lookup still reads the file's rows, paged in again as used).
  std::vector<Matrix*> todo;
  for (LayerWeights& L : layers) {
    for (Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) todo.push_back(m);
  }
  if (output.data != token_embd.data || kernels::kquant_interleaved(output.type)) todo.push_back(&output);
  constexpr size_t kAlign = 64;
  size_t total = 0;
  for (Matrix* m : todo) {
    if (pack_rows_for(*m)) total += (m->row_stride * static_cast<size_t>(m->rows) + kAlign - 1) / kAlign * kAlign;
  }
  if (total == 0) return;
  // One arena (huge pages touched only as filled); one matrix at a time, each
  // source released right after, so the peak holds at most one extra matrix.
  packed_.reset(static_cast<uint8_t*>(alloc_huge(total)));
  size_t off = 0;
  for (Matrix* m : todo) {
    if (!pack_rows_for(*m)) continue;
    const size_t n = m->row_stride * static_cast<size_t>(m->rows);
    repack(*m, packed_.get() + off);
    off += (n + kAlign - 1) / kAlign * kAlign;
  }
}

}  // namespace bluelm
