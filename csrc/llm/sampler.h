// Token sampler: penalties, then top-k, top-p, min-p, temperature and a seeded
// draw (llama.cpp's default chain order). temperature == 0 is greedy.
#pragma once
#include <cstdint>
#include <deque>
#include <random>
#include <unordered_map>
#include <vector>

namespace bluelm {

struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;      // 0 disables
  float top_p = 0.95f;     // 1 disables
  float min_p = 0.05f;     // 0 disables
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t repeat_last_n = 64;  // tokens the penalties look back over
  uint64_t seed = 0;

  // Throws ArgumentError naming the first invalid field.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  int32_t sample(const float* logits, int64_t n_vocab);
  void accept(int32_t token);  // records a token for the penalties
  void reset();

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::unordered_map<int32_t, int32_t> counts_;
  std::vector<Candidate> cand_;
};

}  // namespace bluelm
