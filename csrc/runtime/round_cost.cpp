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

void DecayedLine::decay(double f) {
  w_ *= f;
  sx_ *= f;
  sxx_ *= f;
  sy_ *= f;
  sxy_ *= f;
}

void DecayedLine::add(double x, double y) {
  w_ += 1.0;
  sx_ += x;
  sxx_ += x * x;
  sy_ += y;
  sxy_ += x * y;
}

DecayedLine::Moments DecayedLine::moments() const {
  const double mx = sx_ / w_, my = sy_ / w_;
  return {mx, my, sxx_ / w_ - mx * mx, sxy_ / w_ - mx * my};
}

void RoundCost::record(int64_t k, double seconds) {
  if (!(seconds > 0.0)) return;
  // Plain steps age the fit too: where it stops drafting, the prior returns
  // after a couple of hundred steps, drafts are tried and measured again (a
  // machine whose load dropped is noticed).
  fit_.decay(k == 0 ? kForgetPlain : kForget);
  if (k == 0) {
    step_ = step_ == 0.0 ? seconds : step_ + kStepWeight * (seconds - step_);
    return;
  }
  if (step_ == 0.0) return;  // no unit yet
  fit_.add(static_cast<double>(k), seconds / step_ - 1.0);  // (after the decay above: at full weight)
}

void RoundCost::line(bool measured, double& c0, double& c1) const {
  c0 = prior_c0_;
  c1 = prior_c1_;
  if (!measured || fit_.weight() < kMinRounds) return;
  const DecayedLine::Moments m = fit_.moments();
  if (m.var < kMinSpread) {
    // One draft length seen: the prior's shape, scaled to the measured level.
    const double f = std::max(m.my, 0.0) / (prior_c0_ + prior_c1_ * m.mx);
    c0 = prior_c0_ * f;
    c1 = std::max(prior_c1_ * f, kMinSlope);
    return;
  }
  c1 = std::max(m.cov / m.var, kMinSlope);
  c0 = std::max(m.my - c1 * m.mx, 0.0);
}

double RoundCost::steps(int64_t k, bool measured) const {
  if (k <= 0) return 1.0;
  double a, b;
  line(measured, a, b);
  return 1.0 + a + b * static_cast<double>(k);
}

void PassCost::record(int64_t rows, double seconds) {
  if (!(seconds > 0.0) || rows < 1) return;
  fit_.decay(kPassForget);
  fit_.add(static_cast<double>(rows), seconds);
}

double PassCost::fixed_rows() const {
  if (fit_.weight() < kMinRounds) return kPriorPassRows;
  const DecayedLine::Moments m = fit_.moments();
  if (m.var < kMinSpread) return kPriorPassRows;
  const double p1 = m.cov / m.var, p0 = m.my - p1 * m.mx;
  if (!(p1 > 0.0)) return kMaxPassRows;  // rows cost nothing measurable: one pass
  return std::clamp(p0 / p1, 0.0, kMaxPassRows);
}

}  // namespace bluelm
