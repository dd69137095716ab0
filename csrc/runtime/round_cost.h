// What a speculative round costs, in plain decode steps, as measured on this
// machine while rounds run: a round that verifies k drafted tokens (k + 1
// rows) costs 1 + c0 + c1 * k steps. The fit starts from a prior and follows
// the wall time of the rounds (exponentially forgotten, so it tracks a machine
// whose load changes): the plain step's time, and a least-squares line through
// (k, time / step - 1) of the drafted rounds. Session::draft_length weighs the
// tokens a draft is expected to add against this cost.
#pragma once
#include <cstdint>

namespace bluelm {

// Exponentially weighted least-squares sums of points (x, y): the line both
// cost fits below follow, older points fading so a machine whose load changes
// is tracked.
class DecayedLine {
 public:
  // Every point so far weighs f times as much as before.
  void decay(double f);
  // A new point at full weight.
  void add(double x, double y);
  double weight() const { return w_; }
  // Weighted means of x and y, variance of x, covariance of x and y
  // (weight() > 0): the slope is cov / var where var is large enough.
  struct Moments {
    double mx, my, var, cov;
  };
  Moments moments() const;

 private:
  double w_ = 0.0, sx_ = 0.0, sxx_ = 0.0, sy_ = 0.0, sxy_ = 0.0;
};

class RoundCost {
 public:
  // The prior: 1 + c0 + c1 * k steps until rounds have been measured.
  RoundCost(double c0, double c1) : prior_c0_(c0), prior_c1_(c1) {}
  // A round that verified k drafted tokens took `seconds`.
  void record(int64_t k, double seconds);
  // The cost of verifying k >= 1 drafted tokens is 1 + c0 + c1 * k steps: the
  // fit of the measured rounds (measured = true, once enough were seen) or the prior.
  void line(bool measured, double& c0, double& c1) const;
  // That cost for k drafted tokens (1 for k = 0).
  double steps(int64_t k, bool measured) const;

 private:

  double prior_c0_, prior_c1_;
  double step_ = 0.0;  // running mean seconds of a plain step (0: none seen)
  // The drafted rounds' points (k, seconds / step - 1: the round's extra cost in steps).
  DecayedLine fit_;
};

// What a pass over the output matrix costs (Context::step_logits), measured:
// a least-squares line seconds = p0 + p1 * rows through the passes (plain
// steps: one row; drafted rounds: more), exponentially forgotten. Its fixed
// part in rows (p0 / p1) tells Session::logit_split whether a second pass for
// the rows after a likely rejection is worth its price. Only the speed
// depends on it: every row's logits are the same in any split.
class PassCost {
 public:
  void record(int64_t rows, double seconds);
  // p0 / p1 of the fit, or the prior until passes of different sizes were seen.
  double fixed_rows() const;

 private:
  DecayedLine fit_;  // points (rows, seconds)
};

}  // namespace bluelm
