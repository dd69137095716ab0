// Token sampler: logit bias, an optional allowed-token mask (constrained
// decoding), penalties, then top-k, top-p, min-p, temperature and a seeded draw
// (llama.cpp's default chain order). temperature == 0 is greedy.
//
// Speculative decoding uses the same chain: p, the distribution a token is
// drawn from, is what the chain leaves before its draw (greedy: the first
// maximum with probability 1), for a target row and a draft model's row alike,
// and verify() applies the accept/reject rule of Leviathan et al. / Chen et al.
// to a drafted token so the output keeps the distribution p exactly.
#pragma once
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bluelm {

// The one definition of the sampling parameters: the Python binding
// (SamplingParams), the Model API and the command line are all generated from
// for_each_field below, so a new field is added here and nowhere else.
struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;      // 0 disables
  float top_p = 0.95f;     // 1 disables
  float min_p = 0.05f;     // 0 disables
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t repeat_last_n = 64;  // tokens the penalties look back over
  std::optional<uint64_t> seed;  // unset: a random seed per sampler
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, added to its logit)

  // Throws ArgumentError naming the first invalid field; logit_bias ids are
  // checked against n_vocab when it is known (> 0).
  void validate(int64_t n_vocab = 0) const;
};

// Visits every field as (name, member, help text), in declaration order.
template <typename P, typename F>
void for_each_field(P& p, F&& f) {
  f("temperature", p.temperature, "0 = greedy; higher is more random");
  f("top_k", p.top_k, "keep the k most likely tokens (0 = all)");
  f("top_p", p.top_p, "keep the smallest set with this much probability (1 = off)");
  f("min_p", p.min_p, "drop tokens below min_p x the top probability (0 = off)");
  f("repeat_penalty", p.repeat_penalty, "divide the logits of recent tokens (1 = off)");
  f("presence_penalty", p.presence_penalty, "subtracted once from recent tokens' logits");
  f("frequency_penalty", p.frequency_penalty, "subtracted per occurrence in recent tokens");
  f("repeat_last_n", p.repeat_last_n, "recent tokens the penalties look at");
  f("seed", p.seed, "seed of the draw (None: random)");
  f("logit_bias", p.logit_bias, "{token id: bias added to its logit}");
}

// One allowed-token mask: bit (t % 32) of word t / 32 set = token t may be
// sampled (llguidance's layout). nullptr = every token allowed.
using TokenMask = const uint32_t*;

// The log-probabilities of the distribution a token was drawn from: the
// softmax over the whole vocabulary of the logits after bias, mask and
// penalties (before temperature and truncation, as OpenAI reports them).
struct TokenLogprobs {
  float chosen = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

// A distribution over a few tokens, sorted by id: the chain's survivors and
// their probabilities (a draft model's q). Empty = a point mass on the drafted
// token (a deterministic drafter such as prompt lookup).
struct TokenProb {
  int32_t id;
  float p;
};
using TokenDist = std::vector<TokenProb>;

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p, int64_t n_vocab = 0);
  // The next token. Throws ArgumentError when `mask` allows no token.
  int32_t sample(const float* logits, int64_t n_vocab, TokenMask mask = nullptr,
                 TokenLogprobs* logprobs = nullptr, int n_top = 0);
  // As sample(), and `q` receives the distribution the token was drawn from
  // (a draft model's step).
  int32_t sample_draft(const float* logits, int64_t n_vocab, TokenDist& q);
  // Speculative verification of `draft` at a row with these logits: accepted
  // with probability min(1, p(draft) / q(draft)) (q empty: a point mass, so
  // min(1, p(draft))); otherwise a token is drawn from max(0, p - q),
  // normalised. The result is distributed as p whatever q is. Sets *accepted.
  int32_t verify(const float* logits, int64_t n_vocab, TokenMask mask, int32_t draft, const TokenDist& q,
                 bool* accepted, TokenLogprobs* logprobs = nullptr, int n_top = 0);
  // Whether this sampler's token is always the first maximum of the raw
  // logits (greedy, no bias, no penalties): then the caller may find that
  // maximum itself and call verify_argmax (no mask, no logprobs).
  bool argmax_only() const;
  // verify() on a row whose first maximum is `argmax` (argmax_only()): the
  // same outcome and the same random draws.
  int32_t verify_argmax(int32_t argmax, int32_t draft, const TokenDist& q, bool* accepted);
  void accept(int32_t token);  // records a token for the penalties
  void follow(const Sampler& other);  // takes other's penalty history (a draft's sampler)
  void reset();
  const SamplerParams& params() const { return p_; }
  uint64_t seed() const { return seed_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  // logits with bias, mask and penalties applied, NaN/inf made orderable
  const float* processed(const float* logits, int64_t n_vocab, TokenMask mask);
  bool plain() const;  // no bias and no penalties: logits are used as they are
  bool penalties_apply() const;
  // Greedy without penalties: the first maximum, the logits read in place and
  // only the biased tokens' values computed (processed() would copy them all:
  // 0.5 MiB a token for a 128k vocabulary); leaves it in cand_.
  void greedy(const float* logits, int64_t n_vocab, TokenMask mask);
  // Leaves in cand_ the distribution the next token is drawn from (greedy: the
  // first maximum, p = 1); returns the logits fill_logprobs reads (processed
  // when `processed_needed`). Throws ArgumentError when the mask allows nothing.
  const float* distribution(const float* logits, int64_t n_vocab, TokenMask mask, bool processed_needed);
  // verify()'s rule on cand_ (p): sets *accepted; returns the token, or -1
  // where the residual has no mass (the caller then draws from p again).
  int32_t accept_or_resample(int32_t draft, const TokenDist& q, bool* accepted);
  void chain();  // top-k, top-p, min-p, temperature over cand_
  double uniform();  // [0, 1) from 53 random bits
  int32_t pick(double u) const;  // walks cand_'s cumulative mass
  void fill_logprobs(const float* l, int64_t n_vocab, int32_t chosen, int n_top, TokenLogprobs& out) const;

  SamplerParams p_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::unordered_map<int32_t, int32_t> counts_;
  std::vector<Candidate> cand_;
  std::vector<float> work_;
  std::vector<std::pair<int32_t, float>> bias_by_id_;  // logit_bias, stably sorted by token id
};

}  // namespace bluelm
