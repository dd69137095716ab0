#include "runtime/round_cost.h"

#include <algorithm>

namespace bluelm {

namespace {
constexpr double kStepWeight = 0.1;   // of each plain step in the running step time
constexpr double kForget = 0.95;      // per drafted round, the older rounds' weight
constexpr double kForgetPlain = 0.99;  // per plain step (slower: drafts are rare where they do not pay)
constexpr double kMinRounds = 3.0;    // weight of drafted rounds before the fit replaces the prior
constexpr double kMinSpread = 0.5;    // variance of k below which only the level is fitted
constexpr double kMinSlope = 0.02;    // a drafted row is never free
// A pass's fixed cost in rows until measured: SmolLM2-135M's 49152 x 576 Q8_0
// output matrix on AVX-512 at 2 threads, a one-row pass 1.34 ms, a nine-row
// one 3.14 ms (about 1.1 ms + 0.22 ms a row).
constexpr double kPriorPassRows = 4.0;
constexpr double kPassForget = 0.98;
constexpr double kMaxPassRows = 64.0;
}  // namespace

void RoundCost::record(int64_t k, double seconds) {
  if (!(seconds > 0.0)) return;
  // Plain steps age the fit too: where it stops drafting, the prior returns
  // after a couple of hundred steps, drafts are tried and measured again (a
  // machine whose load dropped is noticed).
  const double f = k == 0 ? kForgetPlain : kForget;
  w_ *= f;
  sk_ *= f;
  skk_ *= f;
  sy_ *= f;
  sky_ *= f;
  if (k == 0) {
    step_ = step_ == 0.0 ? seconds : step_ + kStepWeight * (seconds - step_);
    return;
  }
  if (step_ == 0.0) return;  // no unit yet
  const double x = static_cast<double>(k), y = seconds / step_ - 1.0;
  w_ += 1.0;  // (after the decay above: this round at full weight)
  sk_ += x;
  skk_ += x * x;
  sy_ += y;
  sky_ += x * y;
}

void RoundCost::line(bool measured, double& c0, double& c1) const {
  c0 = prior_c0_;
  c1 = prior_c1_;
  if (!measured || w_ < kMinRounds) return;
  const double mk = sk_ / w_, my = sy_ / w_, var = skk_ / w_ - mk * mk;
  if (var < kMinSpread) {
    // One draft length seen: the prior's shape, scaled to the measured level.
    const double f = std::max(my, 0.0) / (prior_c0_ + prior_c1_ * mk);
    c0 = prior_c0_ * f;
    c1 = std::max(prior_c1_ * f, kMinSlope);
    return;
  }
  c1 = std::max((sky_ / w_ - mk * my) / var, kMinSlope);
  c0 = std::max(my - c1 * mk, 0.0);
}

double RoundCost::steps(int64_t k, bool measured) const {
  if (k <= 0) return 1.0;
  double a, b;
  line(measured, a, b);
  return 1.0 + a + b * static_cast<double>(k);
}

void PassCost::record(int64_t rows, double seconds) {
  if (!(seconds > 0.0) || rows < 1) return;
  const double r = static_cast<double>(rows);
  w_ = kPassForget * w_ + 1.0;
  sr_ = kPassForget * sr_ + r;
  srr_ = kPassForget * srr_ + r * r;
  st_ = kPassForget * st_ + seconds;
  srt_ = kPassForget * srt_ + r * seconds;
}

double PassCost::fixed_rows() const {
  if (w_ < kMinRounds) return kPriorPassRows;
  const double mr = sr_ / w_, mt = st_ / w_, var = srr_ / w_ - mr * mr;
  if (var < kMinSpread) return kPriorPassRows;
  const double p1 = (srt_ / w_ - mr * mt) / var, p0 = mt - p1 * mr;
  if (!(p1 > 0.0)) return kMaxPassRows;  // rows cost nothing measurable: one pass
  return std::clamp(p0 / p1, 0.0, kMaxPassRows);
}

}  // namespace bluelm
