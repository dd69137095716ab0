// Drafters for speculative decoding: each proposes tokens to follow the
// session's sequence; the session verifies them in one forward pass of the
// target model (Session::step). A draft never changes what is generated, only
// how fast: a token the target would not produce is rejected.
//
// - PromptLookup (prompt_lookup.*): copies what followed the latest earlier
//   occurrence of the sequence's last n tokens (the prompt and the output so
//   far). Deterministic, so its q is a point mass.
// - DraftModel (draft_model.*): a smaller model sharing the vocabulary samples
//   the draft with the target's sampling parameters (its q is its own chain's
//   distribution), from its own KV cache kept in step with the target's tokens.
#pragma once
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "llm/sampler.h"

namespace bluelm {

struct PositionKey;

// Kinds of drafts a drafter tells apart; the session keeps an acceptance
// estimate per kind. Kind 0: one estimate serves every token of the draft
// (a draft model). Kind m >= 1 (prompt lookup: the sequence agrees with the
// copied source over its last m tokens): the draft's token j is estimated as
// kind min(m + j, kDraftKinds - 1), since each accepted token lengthens the
// agreement the next one continues.
constexpr int kDraftKinds = 17;

// What a drafter proposes: tokens, and per token the distribution it was
// drawn from (empty vector: every token is a point mass); its kind.
struct Draft {
  std::vector<int32_t> tokens;
  std::vector<TokenDist> q;
  int kind = 0;
  void clear() {
    tokens.clear();
    q.clear();
    kind = 0;
  }
};

// The state a draft continues: the cached positions, then `pending` (the last
// token generated, not yet in the cache).
struct DraftRequest {
  const std::vector<PositionKey>& keys;
  int32_t pending;
  int64_t max_tokens;                          // propose at most this many
  const Sampler& target;                       // the target's sampler (parameters, penalty history)
  const std::unordered_set<int32_t>& eog;      // a draft ends after one of these
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // A new generation with these sampling parameters starts (seed: the target sampler's).
  virtual void start(const SamplerParams& params, uint64_t seed) = 0;
  // Fills `out` with at most req.max_tokens tokens (possibly none).
  virtual void draft(const DraftRequest& req, Draft& out) = 0;
  virtual const char* name() const = 0;
};

}  // namespace bluelm
