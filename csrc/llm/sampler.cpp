#include "llm/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/errors.h"

namespace bluelm {

void SamplerParams::validate() const {
  auto bad = [](const std::string& what) { throw ArgumentError(what); };
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) bad("temperature must be >= 0, got " + std::to_string(temperature));
  if (top_k < 0) bad("top_k must be >= 0 (0 disables it), got " + std::to_string(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) bad("top_p must be in (0, 1], got " + std::to_string(top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p must be in [0, 1], got " + std::to_string(min_p));
  if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) bad("repeat_penalty must be > 0, got " + std::to_string(repeat_penalty));
  if (!std::isfinite(presence_penalty)) bad("presence_penalty must be finite");
  if (!std::isfinite(frequency_penalty)) bad("frequency_penalty must be finite");
  if (repeat_last_n < 0) bad("repeat_last_n must be >= 0, got " + std::to_string(repeat_last_n));
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

void Sampler::reset() {
  rng_.seed(p_.seed);
  recent_.clear();
  counts_.clear();
}

void Sampler::accept(int32_t token) {
  if (p_.repeat_last_n == 0) return;
  recent_.push_back(token);
  ++counts_[token];
  if (static_cast<int32_t>(recent_.size()) > p_.repeat_last_n) {
    const int32_t old = recent_.front();
    recent_.pop_front();
    if (--counts_[old] == 0) counts_.erase(old);
  }
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  cand_.resize(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) cand_[i] = {static_cast<int32_t>(i), logits[i], 0.0f};

  const bool penalise = p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f;
  if (penalise) {
    for (const auto& [tok, count] : counts_) {
      if (tok < 0 || tok >= n_vocab) continue;
      float& l = cand_[tok].logit;
      l = l <= 0.0f ? l * p_.repeat_penalty : l / p_.repeat_penalty;
      l -= static_cast<float>(count) * p_.frequency_penalty + p_.presence_penalty;
    }
  }

  // NaN (from the logits or inf - inf in a penalty) would break the sort's
  // ordering, which is undefined behaviour, and win argmax: it counts as the
  // least likely value. Infinities become the largest finite values so softmax
  // never computes inf - inf: +inf wins outright, -inf keeps zero mass.
  constexpr float kMax = std::numeric_limits<float>::max();
  for (auto& c : cand_) c.logit = std::isnan(c.logit) ? -kMax : std::min(std::max(c.logit, -kMax), kMax);

  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (p_.temperature == 0.0f) {
    return std::min_element(cand_.begin(), cand_.end(), by_logit)->id;  // first maximum
  }

  size_t n = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = static_cast<size_t>(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  cand_.resize(n);

  auto softmax = [&](float temperature) {
    const float mx = cand_[0].logit;
    double sum = 0.0;
    for (auto& c : cand_) {
      c.p = std::exp((c.logit - mx) / temperature);
      sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  };

  // top-p: keep the smallest prefix whose mass reaches top_p.
  if (p_.top_p < 1.0f) {
    softmax(1.0f);
    double cum = 0.0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].p;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }
  // min-p: drop tokens less likely than min_p times the most likely one.
  if (p_.min_p > 0.0f) {
    const float cut = cand_[0].logit + std::log(p_.min_p);
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].logit >= cut) ++keep;
    cand_.resize(keep);
  }
  softmax(p_.temperature);

  // A portable draw: 53 random bits -> [0, 1), then walk the cumulative mass.
  const double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
  double cum = 0.0;
  for (const auto& c : cand_) {
    cum += c.p;
    if (u < cum) return c.id;
  }
  return cand_.back().id;
}

}  // namespace bluelm
