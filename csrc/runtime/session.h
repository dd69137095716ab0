// A session: one KV cache (Context), a record of what each of its positions
// holds, the request's cancel flag and the decode loop. It is the one way a
// prompt reaches the cache: every request is a list of segments (text tokens,
// image embeddings, image patches) that prefill() brings into the cache through
// the scheduler (prefill_pipeline.h), reusing the longest prefix already there
// (tokens by id, image rows by the image's content key and row), and the
// decode loop then samples and appends one token per step.
//
// Decode, one round at a time: evaluate the token sampled last together with
// the drafter's proposal (if any) in one forward pass whose rows are each
// computed exactly as a one-token step would (Context::eval_as_steps), then
// walk the rows: a drafted token is accepted or replaced by the sampler's
// accept/reject rule (Sampler::verify; greedy: accepted iff it is the argmax),
// the first replacement ends the round, and a fully accepted draft earns one
// more token from the last row. A drafted round whose sampler is plain greedy
// (no mask, no logprobs) takes each row's first maximum from
// Context::step_argmax instead of its logits, which are computed only if read
// (logits()). The cache is cut back to the accepted prefix
// (keys_ follows n_past). Without a drafter a round is one plain step. Rounds
// stop at an end-of-generation token, max_tokens, a full context or a cancel.
// step() hands out a round's tokens one at a time; advance() all at once, with
// a mask per row (structured output: the caller computes the masks the
// grammar gives after each drafted token).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include "llm/decoder.h"
#include "llm/sampler.h"
#include "runtime/drafter.h"
#include "runtime/prefill_pipeline.h"
#include "runtime/round_cost.h"

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

// A generated token and its log-probabilities (when they were asked for).
struct Emitted {
  int32_t token;
  TokenLogprobs logprobs;
};

// Counts of the current generation's speculative rounds.
struct DraftStats {
  int64_t rounds = 0;    // forward passes that verified a non-empty draft
  int64_t drafted = 0;   // tokens proposed and verified
  int64_t accepted = 0;  // of those, accepted
  // Where the generation's rounds (plain steps included) spent their time, in
  // seconds: the drafter, the forward pass of the rows, the passes over the
  // output matrix (logit_passes of them), the sampler's verification.
  int64_t steps = 0;  // rounds of any length, plain steps included
  int64_t logit_passes = 0;
  int64_t argmax_passes = 0;  // of those, passes that found greedy tokens without logits (step_argmax)
  double draft_s = 0.0, forward_s = 0.0, logits_s = 0.0, verify_s = 0.0;
};

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
  // With a mask the step is a plain one (no draft): the mask holds for this
  // position only.
  std::optional<int32_t> step(TokenMask mask = nullptr, TokenLogprobs* logprobs = nullptr, int n_top = 0);
  StopReason stop_reason() const { return stop_; }
  int64_t n_generated() const { return n_generated_; }

  // Speculative decoding: the drafter proposes up to n_draft tokens per round
  // (1 <= n_draft < n_batch: the round is one chunk); null turns it off.
  // measured_cost: greedy generations choose draft lengths by the rounds'
  // measured cost (RoundCost); false: by the prior alone, so how often drafts
  // are verified does not depend on the machine's load (tests).
  void set_drafter(std::unique_ptr<Drafter> drafter, int64_t n_draft, bool measured_cost = false);
  const Drafter* drafter() const { return drafter_.get(); }
  int64_t n_draft() const { return n_draft_; }
  // The next round's draft (empty before the first token, without a drafter,
  // or where the drafter finds nothing). Kept for advance().
  const std::vector<int32_t>& propose();
  // One round over `draft` (n tokens; a prefix of propose()'s keeps its q,
  // other tokens count as a deterministic draft; with or without a drafter;
  // cut to n_batch - 1 and to what max_tokens and the context leave), masks:
  // null or n + 1 masks (null entries allowed), one per row. Appends the
  // round's tokens to `out`: none once the generation has ended (stop_reason()).
  void advance(const int32_t* draft, int64_t n, const TokenMask* masks, bool logprobs, int n_top,
               std::vector<Emitted>& out);
  const DraftStats& draft_stats() const { return stats_; }

  // Stops the request in flight (any thread): a prefill rolls back and throws
  // CancelledError, a generation ends at its next step. The flag is consumed
  // by the request it stops; clear_cancel() drops one that came too late.
  void cancel() { cancel_ = true; }
  void clear_cancel() { cancel_ = false; }
  bool cancel_pending() const { return cancel_.load(); }

  // Logits of the last prefill or step: n_logit_rows() rows of n_vocab (a
  // round that found its tokens without them computes them here, once).
  const float* logits();
  int64_t n_logit_rows();

  void truncate(int64_t n);  // forgets positions >= n
  int64_t n_past() const { return ctx_.n_past(); }
  const std::vector<PositionKey>& keys() const { return keys_; }
  // What speculative rounds cost on this machine (measured across generations).
  const RoundCost& round_cost() const { return cost_; }
  Context& context() { return ctx_; }
  const Context& context() const { return ctx_; }

 private:
  int64_t common_prefix(const std::vector<PositionKey>& want) const;
  std::vector<PositionKey> keys_of(const std::vector<PrefillSegment>& segs, const VisionModel* vision) const;
  // Runs the scheduler; on success `added` (one key per new position) joins keys_.
  PrefillStats run(const std::vector<PrefillSegment>& segs, const VisionModel* vision, const PrefillOptions& opt,
                   std::vector<PositionKey> added);
  [[noreturn]] void throw_cancelled();
  // Why the generation must end before another round, or None.
  StopReason check_end();
  void end(StopReason why);
  // Computes the logits a round skipped (owed_rows_), before they are read.
  void pay_logits();
  // Runs one round (see the top) into queue_; masks as advance().
  void round(const int32_t* draft, int64_t n, const TokenMask* masks, bool logprobs, int n_top);
  // The longest draft (at most cap) the next round may verify: max_tokens and
  // the context leave room for it and the token after it.
  int64_t draft_room(int64_t cap) const;
  // How many of the `room` tokens of a draft of this kind to verify (see
  // session.cpp): 0 where drafting does not pay at the acceptance seen so far.
  int64_t draft_length(int64_t room, int kind);
  // Rows of a round of n drafts of this kind whose logits are computed first
  // (the rest when all their drafts pass), by the acceptance estimates.
  int64_t logit_split(int64_t n, int kind) const;

  Context ctx_;
  std::vector<PositionKey> keys_;  // one per position < n_past
  std::atomic<bool> cancel_{false};
  uint64_t anonymous_ = 0;  // keys for images without one: never equal to another
  std::vector<float> all_logits_;
  bool logits_all_ = false;

  std::optional<Sampler> sampler_;
  std::unordered_set<int32_t> eog_;
  int64_t max_tokens_ = 0, n_generated_ = 0;
  int64_t n_emitted_ = 0;  // generated by rounds (returned, or still in queue_)
  int32_t pending_ = -1;  // sampled, not yet evaluated
  StopReason stop_ = StopReason::None;
  StopReason final_ = StopReason::None;  // the end a round found, once queue_ is drained
  std::vector<Emitted> queue_;  // a round's tokens not yet returned by step()
  size_t queue_head_ = 0;

  std::unique_ptr<Drafter> drafter_;
  int64_t n_draft_ = 0;
  Draft draft_;  // the last proposal
  DraftStats stats_;
  std::array<double, kDraftKinds> accept_{};  // running acceptance estimate per Draft::kind
  RoundCost cost_;  // rounds' measured cost, kept across generations (see draft_length)
  PassCost pass_cost_;  // passes over the output matrix, measured (see logit_split)
  bool measured_cost_ = false;
  std::vector<int32_t> buf_;  // the pending token and the draft, one chunk
  std::vector<int32_t> argmax_;  // a greedy round's tokens by row (Context::step_argmax)
  int64_t owed_rows_ = 0;  // rows of the last round whose logits were not computed (pay_logits)
};

}  // namespace bluelm
