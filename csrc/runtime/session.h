// A session: one KV cache (Context), a record of what each of its positions
// holds, the request's cancel flag and the decode loop. It is the one way a
// prompt reaches the cache: every request is a list of segments (text tokens,
// image embeddings, image patches) that prefill() brings into the cache through
// the scheduler (prefill_pipeline.h), reusing the longest prefix already there
// (tokens by id, image rows by the image's content key and row), and the
// decode loop then samples and appends one token per step.
//
// Decode (step): evaluate the token sampled last, sample the next one from its
// logits (bias, optional allowed-token mask, penalties, chain), stop at an
// end-of-generation token, max_tokens, a full context or a cancel. A
// speculative step (draft k tokens, verify them in one forward pass) fits
// here: append the draft with logits for every row, sample each row in turn,
// keep the accepted prefix and truncate() the rest; keys_ follows n_past.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include "llm/decoder.h"
#include "llm/sampler.h"
#include "runtime/prefill_pipeline.h"

namespace bluelm {

// What one KV position holds: token `value`, or row `value` of image `image`.
struct PositionKey {
  ImageKey image;  // zero for a token
  bool is_image = false;
  int64_t value = 0;
  bool operator==(const PositionKey& o) const { return is_image == o.is_image && value == o.value && image == o.image; }
};

// Why a generation ended.
enum class StopReason { None, EndOfGeneration, MaxTokens, ContextFull, Cancelled };

class Session {
 public:
  Session(std::shared_ptr<const LlmModel> model, int64_t n_ctx, int64_t n_batch, int n_threads, GgmlType kv_type);

  // Appends the segments at n_past (no reuse). With opt.logits_all every row's
  // logits are kept (logits()). On error or cancel the cache is as before.
  PrefillStats append(const std::vector<PrefillSegment>& segs, const VisionModel* vision, PrefillOptions opt);
  // Brings the cache to exactly `segs`, reusing the longest cached prefix; at
  // least the last position is run, so its logits are fresh. A prefix that
  // ends inside an image skips that image's cached rows (Patches: encoded,
  // not prefilled). On error or cancel the cache holds the reused prefix.
  PrefillStats prefill(std::vector<PrefillSegment> segs, const VisionModel* vision, const PrefillOptions& opt);

  // How many leading positions of `segs` prefill() would keep from the cache.
  // An Embeddings segment may leave data null (rows not computed): prefill()
  // accepts it only when all its rows are kept.
  int64_t reusable(const std::vector<PrefillSegment>& segs, const VisionModel* vision) const;

  // Starts a generation from the current logits: the sampler sees the last
  // repeat_last_n tokens of the cache for its penalties.
  void start(const SamplerParams& params, std::vector<int32_t> eog, int64_t max_tokens);
  // One decode step (see above); returns the new token, or nothing once the
  // generation has ended (stop_reason()). The token returned last is not yet
  // in the cache: the next step evaluates it.
  std::optional<int32_t> step(TokenMask mask = nullptr, TokenLogprobs* logprobs = nullptr, int n_top = 0);
  StopReason stop_reason() const { return stop_; }
  int64_t n_generated() const { return n_generated_; }

  // Stops the request in flight (any thread): a prefill rolls back and throws
  // CancelledError, a generation ends at its next step. The flag is consumed
  // by the request it stops; clear_cancel() drops one that came too late.
  void cancel() { cancel_ = true; }
  void clear_cancel() { cancel_ = false; }
  bool cancel_pending() const { return cancel_.load(); }

  // Logits of the last prefill or step: n_logit_rows() rows of n_vocab.
  const float* logits() const;
  int64_t n_logit_rows() const;

  void truncate(int64_t n);  // forgets positions >= n
  int64_t n_past() const { return ctx_.n_past(); }
  const std::vector<PositionKey>& keys() const { return keys_; }
  Context& context() { return ctx_; }
  const Context& context() const { return ctx_; }

 private:
  int64_t common_prefix(const std::vector<PositionKey>& want) const;
  std::vector<PositionKey> keys_of(const std::vector<PrefillSegment>& segs, const VisionModel* vision) const;
  // Runs the scheduler; on success `added` (one key per new position) joins keys_.
  PrefillStats run(const std::vector<PrefillSegment>& segs, const VisionModel* vision, const PrefillOptions& opt,
                   std::vector<PositionKey> added);
  [[noreturn]] void throw_cancelled();

  Context ctx_;
  std::vector<PositionKey> keys_;  // one per position < n_past
  std::atomic<bool> cancel_{false};
  uint64_t anonymous_ = 0;  // keys for images without one: never equal to another
  std::vector<float> all_logits_;
  bool logits_all_ = false;

  std::optional<Sampler> sampler_;
  std::unordered_set<int32_t> eog_;
  int64_t max_tokens_ = 0, n_generated_ = 0;
  int32_t pending_ = -1;  // sampled, returned, not yet evaluated
  StopReason stop_ = StopReason::None;
};

}  // namespace bluelm
