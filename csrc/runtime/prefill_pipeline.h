// The prefill scheduler: runs the vision encoder and the LLM prefill at once on
// separate thread groups. The request is a sequence of segments (text tokens,
// ready embeddings, image patches). A producer thread encodes the patches in
// batches on the encoder's pool (n_threads_vision) and hands each batch's
// embeddings over a bounded channel; the calling thread prefills text and
// embeddings in chunks on the Context's pool (n_threads) as they become ready,
// so text before the first image and batch k run while batch k+1 encodes.
//
// Chunking is fixed by the segments alone (each segment is cut into n_batch
// rows from its start, as Context::eval does), never by when a batch arrives,
// so the overlapped and the sequential paths feed the LLM identical chunks and
// give bit-identical logits.
#pragma once
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "llm/decoder.h"
#include "vision/vision_model.h"

namespace bluelm {

// The request was cancelled; the context is back at the n_past it started from.
struct CancelledError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The content key of an image: its rows are cached positions only for the
// very same image (a 128-bit hash the caller computes; zero = anonymous).
struct ImageKey {
  uint64_t hi = 0, lo = 0;
  bool operator==(const ImageKey& o) const { return hi == o.hi && lo == o.lo; }
};

struct PrefillSegment {
  enum class Kind { Tokens, Embeddings, Patches };
  Kind kind = Kind::Tokens;
  std::vector<int32_t> tokens;  // Tokens
  const float* data = nullptr;  // Embeddings: n x n_embd rows; Patches: n x 3 x S x S pixels
  int64_t n = 0;                // rows (Embeddings) or patches (Patches)
  float* out = nullptr;         // Patches, optional: receives the n x n_out_tokens x D embeddings (for a cache)
  ImageKey key;                 // Embeddings / Patches: which image (for the prefix cache)
  int64_t skip = 0;             // Patches: leading rows already in the KV cache (encoded, not prefilled)
};

struct PrefillOptions {
  bool overlap = true;        // false: encode every patch first, then prefill (the sequential path)
  int n_threads_vision = 1;   // the encoder's pool
  int64_t vision_batch = 4;   // patches per encoder batch (the paper's 4)
  // Patches in the request's first batch: the LLM waits for it with nothing
  // else to do, so a small first batch shortens that wait. The same plan is
  // used by both paths, so it never changes the result.
  int64_t first_batch = 1;
  size_t queue_capacity = 1;  // finished batches waiting for the LLM
  // Free the encoder's weights and buffers as soon as the last patch is
  // encoded, while the LLM still prefills (the paper's way to keep the peak
  // low); they are read again from the file when the next image comes.
  bool release_vision = false;
  // Keep the logits of every row (into `all_logits`, n_rows x n_vocab), not only the last.
  bool logits_all = false;
  std::vector<float>* all_logits = nullptr;
};

struct PrefillStats {
  double total_s = 0;        // the whole call
  double encode_s = 0;       // encoder busy time (its thread)
  double prefill_s = 0;      // LLM busy time (the calling thread)
  double wait_s = 0;         // LLM idle, waiting for embeddings
  double first_batch_s = 0;  // until the first patch batch was ready
  int64_t n_rows = 0;        // positions prefilled
  int64_t n_chunks = 0;
  int64_t n_patches = 0;     // patches encoded
  int64_t n_batches = 0;
  int64_t n_reused = 0;      // positions kept from the KV cache (Session::prefill)
};

// Rows a segment puts into the KV cache (Patches: n * tokens_per_patch - skip).
int64_t segment_rows(const PrefillSegment& s, int64_t tokens_per_patch);

// Throws ArgumentError unless every token id is in [0, n_vocab): the one check
// of token ids from outside (the decoder trusts what reaches it).
void check_token_ids(const int32_t* tokens, int64_t n, int64_t n_vocab, const std::string& where);

// Appends the segments to `ctx` at its n_past and leaves the last row's logits.
// On cancel (flag polled between chunks and batches), on an encoder error or on
// any other error, the producer is stopped and joined and ctx is truncated back
// to its starting n_past before the exception (CancelledError, or the original
// one) propagates. `vision` may be null when no segment holds patches.
PrefillStats prefill_segments(Context& ctx, const VisionModel* vision, const std::vector<PrefillSegment>& segs,
                              const PrefillOptions& opt, const std::atomic<bool>& cancel);

}  // namespace bluelm
