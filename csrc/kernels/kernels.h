// The kernel dispatch table: the hot ops of the LLM and of the vision encoder,
// one table per instruction set (csrc/kernels/<isa>/), each built on the table
// below it (scalar <- avx2 <- avx512 <- avx512_bf16; scalar <- neon <-
// neon_dotprod <- neon_i8mm) and overriding what it has. Model code calls only through active().
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/block_formats.h"
#include "kernels/i8_format.h"
#include "kernels/repack.h"

namespace bluelm::kernels {

// Y[t * ldy + r] = dot(W row r, X row t) for r in [r0, r1) and t in [0, n_tok).
// W rows are in the weight type (row stride w_stride bytes); X rows are already
// converted to vec_dot_type(weight type) (row stride x_stride bytes); K is the row
// length in elements. Called concurrently by pool threads on disjoint row ranges.
using GemmFn = void (*)(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y,
                        size_t ldy, int64_t K, int64_t r0, int64_t r1, int64_t n_tok);

// Converts one activation row of K floats into an activation format.
using ConvertRowFn = void (*)(const float* x, void* y, int64_t K);

// Attention for one query row against a KV cache of n_kv positions of one head.
// scores[j] = scale * dot(q, K_j), soft-capped when softcap > 0 (gemma2:
// softcap * tanh(score / softcap)); softmax; out = sum_j p_j V_j. K/V rows are
// head_dim values of kv_type (F32, F16, or Q8_0 blocks of 32) with row stride
// kv_stride elements (a multiple of 32 for Q8_0).
// `scratch` has room for n_kv floats.
// With an F16 cache the sums follow llama.cpp's x86 CPU path (flash attention
// off) operation for operation: `batched` picks the order of its tiled F16
// matmul (a prompt chunk of two or more tokens) over that of its F16 dot
// product (one token).
using AttendFn = void (*)(const float* q, const void* K, const void* V, GgmlType kv_type,
                          size_t kv_stride, int64_t head_dim, int64_t n_kv, float scale,
                          float softcap, bool batched, float* scratch, float* out);

// Attention for m consecutive query rows of one head of a prompt chunk (the
// batched order, no soft-cap): row t (q + t * q_stride) sees n_kv0 + t positions and writes
// out + t * out_stride; `scratch` has room for 4 * (n_kv0 + m - 1) floats. Results
// are those of m calls of attend(batched = true); one call shares each K/V row's
// conversion among the rows. nullptr in a table: the caller loops attend.
using AttendRowsFn = void (*)(const float* q, size_t q_stride, const void* K, const void* V,
                              GgmlType kv_type, size_t kv_stride, int64_t head_dim, int64_t n_kv0,
                              int64_t m, float scale, float* scratch, float* out, size_t out_stride);

// Prompt-chunk attention, flash style: the query rows of a chunk that share one
// KV head, against that head's cache rows, a tile of queries against a tile of
// keys with an online softmax (no n_kv x n_q matrix). A *lane* is one (row,
// query head) pair: lane L is row L / n_group, head L % n_group of the group.
// Row t (position pos0 + t) sees cache positions [lo, pos0 + t], lo = 0, or
// pos0 + t + 1 - window for a sliding-window layer. Scores are scale * q.k,
// soft-capped (softcap * tanh(s / softcap)) when softcap > 0. Every lane's
// result depends only on its own query and the positions it sees, not on the
// lanes beside it or on the chunking, and every table gives the scalar
// reference's bits (kernels/common/flash_attention.h says why).
struct ChunkKv;
struct ChunkAttention {
  const float* q;       // lane (t, g) at q + t * q_stride + g * head_dim
  size_t q_stride;
  const void* k;        // this KV head's cache rows: position p at k + p * kv_stride elements
  const void* v;
  GgmlType kv_type;     // F32, F16 or Q8_0 (then head_dim % 32 == 0)
  size_t kv_stride;     // elements per cache position (a multiple of 32 for Q8_0)
  int64_t head_dim;
  int64_t n_group;      // query heads per KV head
  int64_t pos0;         // position of chunk row 0
  int64_t window;       // 0: causal only
  float scale, softcap;
  float* out;           // lane (t, g) at out + t * out_stride + g * head_dim
  size_t out_stride;
  const ChunkKv* kv;    // attend_chunk_bf16 only: the head's positions, converted
};
// Lanes [lane0, lane1) of a chunk; `work` has attend_chunk_work(head_dim) bytes,
// 64-byte aligned. Threads call it concurrently on disjoint lanes.
using AttendChunkFn = void (*)(const ChunkAttention& a, int64_t lane0, int64_t lane1, void* work);
size_t attend_chunk_work(int64_t head_dim);

// A KV head's cache positions as attend_chunk_bf16 reads them, converted once
// per chunk and layer (convert_chunk_kv) rather than once per lane group;
// indexed by absolute position, head_dim a multiple of 32.
struct ChunkKv {
  int16_t* k;   // keys per block of 32: round(k / d), d = max|k| / 16383, [pos][head_dim]
  float* kd;    // their block scales d (a Q8_0 cache: its own quants and scales), [pos][head_dim / 32]
  uint32_t* v;  // values as bf16 pairs of positions (2i low, 2i + 1 high), [i][head_dim]
};
// Bytes for positions [0, n) of one KV head, and the parts' places in such a
// buffer (64-byte aligned).
size_t chunk_kv_bytes(int64_t head_dim, int64_t n);
ChunkKv chunk_kv_layout(void* buf, int64_t head_dim, int64_t n);
// Positions [p0, p1) of a's cache (a.k, a.v: F16 or Q8_0) into kv; p0 even. An
// odd p1 pairs its last value with zeros (so p1 is odd only at the end).
using ConvertChunkKvFn = void (*)(const ChunkAttention& a, int64_t p0, int64_t p1, const ChunkKv& kv);

// One-token attention of several lanes of one KV head at once: lanes [lane0,
// lane1) of a (ChunkAttention's lanes, rows and windows; a.kv unused), each
// lane's result the bits of attend(batched = false) on its query and the
// positions its row sees, for any cache type; faster where one call reads and
// converts each K/V cache row once for many lanes (a speculative round's rows
// of eval_as_steps). `scratch` has room for min(lane1 - lane0, kStepLanes) *
// (a.pos0 + rows + 16) floats, rows the last lane's row + 1. Threads call it
// concurrently on disjoint lanes. nullptr in a table: the caller loops attend.
constexpr int64_t kStepLanes = 16;
using AttendStepsFn = void (*)(const ChunkAttention& a, int64_t lane0, int64_t lane1, float* scratch);

// One row: y[i] = silu(gate[i]) * up[i], exp as llama.cpp's x86 CPU code computes it.
// GegluFn (same signature): y[i] = gelu_tanh(gate[i]) * up[i], computed as
// gate / (1 + exp(-2 sqrt(2/pi) gate (1 + 0.044715 gate^2))) with the vector exp
// on every element (no llama.cpp order to mirror: its GELU is an F16 table).
using SwigluFn = void (*)(const float* gate, const float* up, float* y, int64_t n);

// Slots of the per-type arrays. A new weight type is a slot here (and in
// weight_slot()), its activation format a slot in ActSlot (and act_slot()).
enum WeightSlot {
  W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1,
  // Added with the K-quants: scalar reference in kernels/scalar/kquants.cpp; the
  // order of arithmetic every table's gemm of these slots keeps (so results are
  // the reference's bits on any ISA) in kernels/scalar/kquants.h; the row-
  // interleaved Q4_K/Q5_K/Q6_K layouts any ISA may pack to (pack/unpack/
  // pack_rows below, R rows per group) in kernels/kquant_pack.h.
  W_Q5_0, W_Q5_1, W_IQ4_NL, W_Q2_K, W_Q3_K, W_Q4_K, W_Q5_K, W_Q6_K, W_IQ4_XS,
  W_COUNT
};
enum ActSlot { A_F32, A_F16, A_BF16, A_Q8_0, A_Q8_1, A_Q8_K, A_COUNT };

// The vision encoder's ops (csrc/vision).
struct VisionKernels {
  // s[j] = softmax(scale * s)[j] over j in [0, n), in place.
  void (*softmax)(float* s, int64_t n, float scale);
  // x = x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3)), i.e. GELU's tanh form.
  void (*gelu_tanh)(float* x, int64_t n);
  // y = (x - mean) / sqrt(var + eps) * w + b over one row of d (sums in double;
  // y may be x).
  void (*layer_norm)(const float* x, int64_t d, const float* w, const float* b, float eps, float* y);
  // The int8 format of i8_format.h: i8_gemm reads weights packed in i8_layout
  // (i8_alloc / i8_pack_rows with it) and activations from i8_quant. Every
  // table's i8_gemm and i8_quant give the scalar reference's bits.
  I8Layout i8_layout;
  I8GemmFn i8_gemm;
  I8QuantFn i8_quant;
  // i8_gemm (accumulate false) with gelu_tanh on each output in its epilogue,
  // while in registers: the bits of i8_gemm then gelu_tanh. Null where a table
  // has none (the encoder then runs the two).
  I8GemmFn i8_gemm_gelu = nullptr;
  // One (image, head) of non-causal attention: out[t][:hd] = softmax_j(scale
  // q_t . k_j) v_j for t, j < n; rows of q, k, v, out are ld floats apart; work
  // holds attention_work(n, hd) floats.
  void (*attention)(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd,
                    float scale, float* out, float* work);
  size_t (*attention_work)(int64_t n, int64_t hd);
  // Optional (nullptr: `attention`): the same op for the int8 encoder, whose
  // matmuls already round to 8 bits, in their arithmetic (AVX512_BF16): each
  // query row quantised as i8_quant does, K less its mean over the keys (a
  // shift of all scores of a query) to s8 per key (scale max|k| / 127), exact
  // int32 score sums scaled by both rows' scales; 255 * 2^(s - max) rounded to
  // u8, V less its mean over the keys to s8 per column (scale max|v| / 127),
  // exact int32 sums, normalised by the exact sum of the u8 weights, plus the
  // mean. Held to the bounds stated in tests/cpp/test_vision.cpp.
  void (*i8_attention)(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd,
                       float scale, float* out, float* work);
  size_t (*i8_attention_work)(int64_t n, int64_t hd);

  // The element-wise entries at once (for the tables' fill functions).
  void set_rows(decltype(softmax) s, decltype(gelu_tanh) g, decltype(layer_norm) l) {
    softmax = s;
    gelu_tanh = g;
    layer_norm = l;
  }
};

constexpr int64_t kGemvBatchMax = 16;

struct KernelTable {
  const char* isa;             // "scalar", "avx2", "avx512", "avx512_bf16", "neon", ...
  GemmFn gemm[W_COUNT];        // by weight type
  ConvertRowFn convert[A_COUNT];  // by activation format
  AttendFn attend;
  SwigluFn swiglu;
  // Weights repacked at load (see kernels/repack.h): rows per interleaved group
  // (0 = this table reads the file layout) and the gemm reading that layout.
  // A packed gemm gives bit-identical results to gemm[] of the same table.
  int pack_rows[W_COUNT];
  GemmFn gemm_packed[W_COUNT];
  AttendRowsFn attend_rows;  // optional (nullptr)
  // The packer of the gemm_packed layout and its inverse; nullptr: repack_rows
  // (whole blocks interleaved, kernels/repack.h) and unpack_rows.
  PackFn pack[W_COUNT];
  PackFn unpack[W_COUNT];
  // Name of a gemm_packed kernel and its layout, for `bluelm-cpp info`
  // (nullptr: unnamed).
  const char* packed_name[W_COUNT];
  SwigluFn geglu;  // GELU(tanh)-gated FFN (gemma)
  AttendChunkFn attend_chunk;
  int64_t chunk_lanes;  // lanes attend_chunk runs at once (its register tiles): split tasks by it
  // Optional (nullptr: none), by weight type, for the file layout and the
  // gemm_packed one: a gemm of 2 to kGemvBatchMax tokens that reads each weight
  // block once and gives every token the bits of gemm[] / gemm_packed[] of one
  // token (the decode kernel's per-row arithmetic): verifying a speculative draft.
  GemmFn gemv_batch[W_COUNT];
  GemmFn gemv_batch_packed[W_COUNT];
  // Optional (nullptr): attend_chunk in a faster order for F16 and Q8_0 caches
  // (head_dim a multiple of 32), on the positions convert_chunk_kv wrote to
  // a.kv: scores as exact int32 dots of integer queries and keys per block of
  // 32 (13 and 15 bits), weights and values rounded to bf16 for P.V, summed in F32. Not the
  // reference's bits: tests/cpp/test_flash.cpp bounds its distance from it; the
  // decoder uses it for chunks past llama.cpp's first KV pad, with the same
  // chunk_lanes.
  AttendChunkFn attend_chunk_bf16;
  ConvertChunkKvFn convert_chunk_kv;
  VisionKernels vision;
  // Optional (nullptr), by weight type, for the file layout: a gemm of 1 to
  // kGemvBatchMax tokens in a faster order than gemm[] (not its bits): every
  // output within gemv_fast_error() (llm/output_argmax.h) of the one-token
  // gemm's. Screens the vocabulary for a greedy round's argmax.
  GemmFn gemv_fast[W_COUNT];
  AttendStepsFn attend_steps;  // optional (nullptr)
};

// Slot of a weight type, or -1 when no kernel exists for it.
int weight_slot(GgmlType t);
int act_slot(GgmlType t);

// The table chosen for this process: BLUELM_ISA if set (an ArgumentError when the
// CPU cannot run it or the name is unknown), else the best the CPU supports.
const KernelTable& active();
// Every table this CPU can run, best last (for tests and benchmarks).
int available(const KernelTable** out, int max);
// The table of one ISA by name, or nullptr when unknown or not runnable here.
const KernelTable* by_name(const char* isa);

// The scalar reference: the truth every SIMD table is tested against.
const KernelTable& scalar_table();

}  // namespace bluelm::kernels
