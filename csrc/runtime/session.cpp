#include "runtime/session.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/errors.h"
#include "core/seconds_since.h"

namespace bluelm {

namespace {
// The draft length policy (Session::draft_length): a running estimate, per
// kind of draft (drafter.h), of how likely a drafted token is accepted, and
// what a round costs in decode steps (RoundCost: measured as rounds run; until
// then, and for sampled generations, the prior 1 + kRoundCost + kTokenCost * k
// for k drafted tokens). SmolLM2-135M Q4_1 on AVX-512 at 2 threads measures
// about 1 + 0.13 + 0.41 * k with one pass over the output matrix a round; the
// prior stays below that: simulated over recorded greedy outputs, it gives
// input-grounded prompts a little more than the measured line would and open
// chat a little less, and rows that get cheaper are drafted at once.
constexpr double kAcceptWeight = 0.2;  // of each drafted token's outcome in the estimate
constexpr double kRecover = 0.05;      // per draft not taken, the estimate moves back to the guess
constexpr double kRoundCost = 0.15;
constexpr double kTokenCost = 0.25;
// A new generation's guess of the acceptance of a kind. Kind 0 (a draft
// model): even odds. Kind m (prompt lookup, the copy's source agrees with the
// sequence's last m tokens): 1 - 1.1 / (m + 0.35), fitted to how often the
// lookup's next token was SmolLM2-135M's greedy one over 20 prompts that are
// not the benchmark's (rewrites, extraction, code, open chat; 0.20 at m = 1,
// 0.60 at 2, 0.75 at 4, 0.85 to 0.94 from 6 on); each generation's outcomes
// then move the estimates to what its own model and text do.
double prior_accept(int kind) { return kind == 0 ? 0.5 : 1.0 - 1.1 / (kind + 0.35); }
// Which estimate serves token j of a draft of this kind (drafter.h).
size_t estimate_of(int kind, int64_t j) {
  return kind == 0 ? 0 : static_cast<size_t>(std::min<int64_t>(kind + j, kDraftKinds - 1));
}
}  // namespace

Session::Session(std::shared_ptr<const LlmModel> model, int64_t n_ctx, int64_t n_batch, int n_threads,
                 GgmlType kv_type)
    : ctx_(std::move(model), n_ctx, n_batch, n_threads, kv_type), cost_(kRoundCost, kTokenCost) {}

void Session::throw_cancelled() {
  cancel_ = false;  // consumed by the request it stopped
  throw CancelledError("prefill cancelled");
}

std::vector<PositionKey> Session::keys_of(const std::vector<PrefillSegment>& segs, const VisionModel* vision) const {
  std::vector<PositionKey> keys;
  const int64_t per_patch = vision ? vision->config().n_out_tokens : 0;
  for (const PrefillSegment& s : segs) {
    if (s.kind == PrefillSegment::Kind::Tokens) {
      for (int32_t t : s.tokens) keys.push_back({ImageKey{}, false, t});
      continue;
    }
    const int64_t rows = s.kind == PrefillSegment::Kind::Patches ? s.n * per_patch : s.n;
    for (int64_t r = 0; r < rows; ++r) keys.push_back({s.key, true, r});
  }
  return keys;
}

PrefillStats Session::run(const std::vector<PrefillSegment>& segs, const VisionModel* vision,
                          const PrefillOptions& opt, std::vector<PositionKey> added) {
  sampler_.reset();  // a prefill ends any generation
  pending_ = -1;
  owed_rows_ = 0;
  queue_.clear();
  queue_head_ = 0;
  try {
    PrefillStats st = prefill_segments(ctx_, vision, segs, opt, cancel_);
    keys_.insert(keys_.end(), added.begin(), added.end());
    logits_all_ = opt.logits_all;
    return st;
  } catch (const CancelledError&) {
    throw_cancelled();
  }
}

PrefillStats Session::append(const std::vector<PrefillSegment>& segs, const VisionModel* vision, PrefillOptions opt) {
  opt.all_logits = &all_logits_;
  std::vector<PrefillSegment> own = segs;
  for (PrefillSegment& s : own) {
    if (s.kind == PrefillSegment::Kind::Embeddings && !s.data) throw ArgumentError("append needs the rows of every image");
    if (s.kind != PrefillSegment::Kind::Tokens && s.key == ImageKey{}) s.key = {~0ull, ++anonymous_};
  }
  return run(own, vision, opt, keys_of(own, vision));
}

int64_t Session::common_prefix(const std::vector<PositionKey>& want) const {
  // Re-run at least one position, for fresh logits.
  const size_t limit = std::min(keys_.size(), want.empty() ? 0 : want.size() - 1);
  size_t keep = 0;
  while (keep < limit && keys_[keep] == want[keep]) ++keep;
  return static_cast<int64_t>(keep);
}

int64_t Session::reusable(const std::vector<PrefillSegment>& segs, const VisionModel* vision) const {
  return common_prefix(keys_of(segs, vision));
}

PrefillStats Session::prefill(std::vector<PrefillSegment> segs, const VisionModel* vision, const PrefillOptions& opt) {
  for (PrefillSegment& s : segs) {
    if (s.kind != PrefillSegment::Kind::Tokens && s.key == ImageKey{}) s.key = {~0ull, ++anonymous_};
  }
  const std::vector<PositionKey> want = keys_of(segs, vision);
  if (want.empty()) throw ArgumentError("the prompt is empty");
  if (static_cast<int64_t>(want.size()) > ctx_.n_ctx()) {
    throw ContextOverflowError("the prompt needs " + std::to_string(want.size()) + " positions but n_ctx is " + std::to_string(ctx_.n_ctx()));
  }
  const size_t keep = static_cast<size_t>(common_prefix(want));
  // Trim the segments to what is not cached.
  std::vector<PrefillSegment> rest;
  const int64_t per_patch = vision ? vision->config().n_out_tokens : 0;
  const int64_t d = ctx_.model().config().n_embd;
  int64_t pos = 0;
  for (PrefillSegment& s : segs) {
    const int64_t rows = s.kind == PrefillSegment::Kind::Patches ? s.n * per_patch : segment_rows(s, per_patch);
    const int64_t off = std::max<int64_t>(static_cast<int64_t>(keep) - pos, 0);
    pos += rows;
    if (off >= rows) continue;
    if (s.kind == PrefillSegment::Kind::Embeddings && !s.data) {
      throw ArgumentError("an image's rows are needed (they are not all in the KV cache) but were not given");
    }
    if (s.kind == PrefillSegment::Kind::Tokens) {
      s.tokens.erase(s.tokens.begin(), s.tokens.begin() + off);
    } else if (s.kind == PrefillSegment::Kind::Embeddings) {
      s.data += off * d;
      s.n -= off;
    } else {
      s.skip = off;
    }
    rest.push_back(std::move(s));
  }
  keys_.resize(keep);
  ctx_.truncate(static_cast<int64_t>(keep));
  PrefillOptions o = opt;
  o.logits_all = false;
  o.all_logits = &all_logits_;
  PrefillStats st = run(rest, vision, o, std::vector<PositionKey>(want.begin() + static_cast<int64_t>(keep), want.end()));
  st.n_reused = static_cast<int64_t>(keep);
  return st;
}

void Session::start(const SamplerParams& params, std::vector<int32_t> eog, int64_t max_tokens) {
  if (n_logit_rows() == 0) throw ArgumentError("no logits yet: prefill a prompt first");
  if (max_tokens < 0) throw ArgumentError("max_tokens must be >= 0, got " + std::to_string(max_tokens));
  sampler_.emplace(params, ctx_.model().config().n_vocab);
  eog_ = std::unordered_set<int32_t>(eog.begin(), eog.end());
  max_tokens_ = max_tokens;
  n_generated_ = n_emitted_ = 0;
  pending_ = -1;
  stop_ = final_ = StopReason::None;
  queue_.clear();
  queue_head_ = 0;
  draft_.clear();
  stats_ = DraftStats{};
  for (int k = 0; k < kDraftKinds; ++k) accept_[static_cast<size_t>(k)] = prior_accept(k);
  const size_t window = static_cast<size_t>(params.repeat_last_n);
  const size_t from = keys_.size() > window ? keys_.size() - window : 0;
  for (size_t i = from; i < keys_.size(); ++i) {
    if (!keys_[i].is_image) sampler_->accept(static_cast<int32_t>(keys_[i].value));
  }
  if (drafter_) drafter_->start(params, sampler_->seed());
}

void Session::set_drafter(std::unique_ptr<Drafter> drafter, int64_t n_draft, bool measured_cost) {
  if (drafter && (n_draft < 1 || n_draft >= ctx_.n_batch())) {
    throw ArgumentError("n_draft must be between 1 and n_batch - 1 = " + std::to_string(ctx_.n_batch() - 1) +
                        " (a draft and the token before it are verified as one chunk of n_batch), got " +
                        std::to_string(n_draft));
  }
  drafter_ = std::move(drafter);
  n_draft_ = drafter_ ? n_draft : 0;
  measured_cost_ = measured_cost;
  draft_.clear();
}

void Session::end(StopReason why) {
  stop_ = why;
  queue_.clear();
  queue_head_ = 0;
  if (why == StopReason::Cancelled) cancel_ = false;
}

StopReason Session::check_end() {
  if (cancel_.load()) return StopReason::Cancelled;
  if (queue_head_ < queue_.size()) return StopReason::None;
  if (final_ != StopReason::None) return final_;
  if (n_emitted_ >= max_tokens_) return StopReason::MaxTokens;
  if (pending_ >= 0 && ctx_.n_past() >= ctx_.n_ctx()) return StopReason::ContextFull;
  return StopReason::None;
}

int64_t Session::draft_room(int64_t cap) const {
  if (pending_ < 0) return 0;  // the first token comes from the prefill's logits
  // One round emits at most n + 1 tokens and caches the pending token and n drafts.
  const int64_t by_tokens = max_tokens_ - n_emitted_ - 1;
  const int64_t by_ctx = ctx_.n_ctx() - ctx_.n_past() - 1;
  return std::max<int64_t>(0, std::min({cap, by_tokens, by_ctx}));
}

int64_t Session::draft_length(int64_t room, int kind) {
  // The k that gives the most tokens per unit of work: a round of k drafts
  // emits 1 + sum over i <= k of P(the first i drafts are accepted) tokens on
  // average, P the product of the drafts' acceptance estimates. Where no k
  // pays, no draft; the first token's estimate then drifts back to its prior,
  // so this kind is tried again later. The measured cost serves greedy
  // generations only: a sampled one draws random numbers per verified token,
  // so its draft lengths (and thus its text for a seed) must not depend on
  // timing.
  double c0, c1;
  cost_.line(measured_cost_ && sampler_->params().temperature <= 0.0f, c0, c1);
  double best = 1.0, tokens = 1.0, pk = 1.0;
  int64_t k_best = 0;
  for (int64_t k = 1; k <= room; ++k) {
    pk *= accept_[estimate_of(kind, k - 1)];
    tokens += pk;
    const double v = tokens / (1.0 + c0 + c1 * static_cast<double>(k));
    if (v > best) {
      best = v;
      k_best = k;
    }
  }
  if (k_best == 0) {
    double& a = accept_[estimate_of(kind, 0)];
    a += kRecover * (prior_accept(static_cast<int>(estimate_of(kind, 0))) - a);
  }
  return k_best;
}

int64_t Session::logit_split(int64_t n, int kind) const {
  // Rows [0, s) first, the rest (n + 1 - s rows) if drafts 0..s-1 are all
  // accepted (probability P(s), as in draft_length): in units of one row's
  // output product, with a pass over the output matrix costing F rows more
  // (measured, PassCost), the s of least expected cost (s = n + 1: one pass).
  const double F = pass_cost_.fixed_rows();
  double best = F + static_cast<double>(n + 1), ps = 1.0;
  int64_t s_best = n + 1;
  for (int64_t s = 1; s <= n; ++s) {
    ps *= accept_[estimate_of(kind, s - 1)];
    const double c = F + static_cast<double>(s) + ps * (F + static_cast<double>(n + 1 - s));
    if (c < best) {
      best = c;
      s_best = s;
    }
  }
  return s_best;
}

const std::vector<int32_t>& Session::propose() {
  if (!sampler_) throw ArgumentError("no generation in progress: call start first");
  draft_.clear();
  const int64_t room = draft_room(n_draft_);
  if (drafter_ && room > 0 && stop_ == StopReason::None && queue_head_ == queue_.size()) {
    const auto t0 = std::chrono::steady_clock::now();
    drafter_->draft(DraftRequest{keys_, pending_, room, *sampler_, eog_}, draft_);
    stats_.draft_s += seconds_since(t0);
    draft_.kind = std::min<int>(std::max(draft_.kind, 0), kDraftKinds - 1);
    const int64_t n = std::min<int64_t>(room, static_cast<int64_t>(draft_.tokens.size()));
    draft_.tokens.resize(static_cast<size_t>(n > 0 ? draft_length(n, draft_.kind) : 0));
  }
  return draft_.tokens;
}

void Session::round(const int32_t* draft, int64_t n, const TokenMask* masks, bool logprobs, int n_top) {
  queue_.clear();
  queue_head_ = 0;
  const int64_t nv = ctx_.model().config().n_vocab;
  Emitted e{-1, {}};
  TokenLogprobs* lp = logprobs ? &e.logprobs : nullptr;
  if (pending_ < 0) {  // the first token: from the logits the prefill left
    const float* last = logits() + (n_logit_rows() - 1) * nv;
    e.token = sampler_->sample(last, nv, masks ? masks[0] : nullptr, lp, n_top);
    if (eog_.count(e.token)) {
      final_ = StopReason::EndOfGeneration;
      return;
    }
    sampler_->accept(e.token);
    pending_ = e.token;
    ++n_emitted_;
    queue_.push_back(std::move(e));
    return;
  }
  n = std::min(n, draft_room(ctx_.n_batch() - 1));  // the round is one chunk
  check_token_ids(draft, n, nv, "draft: ");
  // The proposal's distributions serve a draft that is a prefix of it.
  const bool from_proposal = n <= static_cast<int64_t>(draft_.tokens.size()) &&
                             std::equal(draft, draft + n, draft_.tokens.begin());
  const bool proposed = from_proposal && !draft_.q.empty();
  const int proposed_kind = from_proposal ? draft_.kind : 0;
  static const TokenDist kPointMass;
  buf_.assign(1, pending_);
  buf_.insert(buf_.end(), draft, draft + n);
  const int64_t n0 = ctx_.n_past();
  const auto t0 = std::chrono::steady_clock::now();
  owed_rows_ = 0;
  ctx_.eval_as_steps(buf_.data(), n + 1);
  const double forward_s = seconds_since(t0);
  double logits_s = 0.0;
  logits_all_ = false;
  // A drafted greedy round whose tokens are the rows' first maxima needs no
  // logits: one pass finds them (Context::step_argmax, all rows: past the
  // first it costs little a row); the logits stay owed (owed_rows_).
  bool by_argmax = false;
  if (n > 0 && !masks && !logprobs && sampler_->argmax_only()) {
    const auto tl = std::chrono::steady_clock::now();
    argmax_.resize(static_cast<size_t>(n + 1));
    by_argmax = ctx_.step_argmax(n + 1, argmax_.data());
    if (by_argmax) {
      logits_s += seconds_since(tl);
      ++stats_.logit_passes;
      ++stats_.argmax_passes;
    }
  }
  // Otherwise the rows' logits by need: a first pass up to where a rejection
  // is likely, the rest only if every draft there is accepted.
  const int64_t first = by_argmax ? n + 1 : logit_split(n, proposed_kind);
  for (int32_t t : buf_) keys_.push_back({ImageKey{}, false, t});
  pending_ = -1;
  int64_t i = 0;
  const int64_t emitted0 = n_emitted_;
  try {
    for (;; ++i) {
      bool accepted = false;
      if (by_argmax) {
        const int32_t top = argmax_[static_cast<size_t>(i)];
        e.token = i < n ? sampler_->verify_argmax(top, draft[i], proposed ? draft_.q[i] : kPointMass, &accepted) : top;
      } else {
        if (i >= ctx_.n_logit_rows()) {
          const auto tl = std::chrono::steady_clock::now();
          const int64_t end = i < first ? first : n + 1;
          ctx_.step_logits(end);
          const double pass_s = seconds_since(tl);
          pass_cost_.record(end - i, pass_s);
          logits_s += pass_s;
          ++stats_.logit_passes;
        }
        const float* row = ctx_.logits() + i * nv;
        const TokenMask mask = masks ? masks[i] : nullptr;
        if (i < n) {
          e.token = sampler_->verify(row, nv, mask, draft[i], proposed ? draft_.q[i] : kPointMass, &accepted, lp, n_top);
        } else {
          e.token = sampler_->sample(row, nv, mask, lp, n_top);  // after the whole draft: one more
        }
      }
      if (eog_.count(e.token)) {
        final_ = StopReason::EndOfGeneration;
        break;
      }
      sampler_->accept(e.token);
      ++n_emitted_;
      queue_.push_back(e);
      if (!accepted) {
        pending_ = e.token;
        break;
      }
    }
  } catch (...) {  // a mask that allows nothing: the session is left as before the round
    ctx_.truncate(n0);
    keys_.resize(static_cast<size_t>(n0));
    pending_ = buf_[0];
    n_emitted_ = emitted0;
    queue_.clear();
    throw;
  }
  // The forward pass and the verification: what the round cost.
  const double took = seconds_since(t0);
  cost_.record(n, took);
  ++stats_.steps;
  stats_.forward_s += forward_s;
  stats_.logits_s += logits_s;
  stats_.verify_s += took - forward_s - logits_s;
  // Positions kept: the old pending token and the accepted drafts.
  owed_rows_ = by_argmax ? std::min(i + 1, n + 1) : 0;  // the rows looked at
  ctx_.truncate(n0 + 1 + i);
  keys_.resize(static_cast<size_t>(n0 + 1 + i));
  if (n > 0) {
    ++stats_.rounds;
    stats_.drafted += n;
    stats_.accepted += std::min(i, n);
    // The outcomes of the drafted tokens verified: accepted ones, then the one rejected.
    for (int64_t j = 0; j < std::min(i + 1, n); ++j) {
      double& a = accept_[estimate_of(proposed_kind, j)];
      a += kAcceptWeight * ((j < i ? 1.0 : 0.0) - a);
    }
  }
}

std::optional<int32_t> Session::step(TokenMask mask, TokenLogprobs* logprobs, int n_top) {
  if (!sampler_) throw ArgumentError("no generation in progress: call start first");
  if (stop_ != StopReason::None) return std::nullopt;
  StopReason why = check_end();
  if (why != StopReason::None) {
    end(why);
    return std::nullopt;
  }
  if (queue_head_ == queue_.size()) {
    // A mask holds for one position: no draft then.
    if (mask) round(nullptr, 0, &mask, logprobs != nullptr, n_top);
    else {
      const std::vector<int32_t>& d = propose();
      round(d.data(), static_cast<int64_t>(d.size()), nullptr, logprobs != nullptr, n_top);
    }
    if (queue_.empty()) {
      end(final_);
      return std::nullopt;
    }
  }
  Emitted& e = queue_[queue_head_++];
  if (logprobs) *logprobs = std::move(e.logprobs);
  ++n_generated_;
  return e.token;
}

void Session::advance(const int32_t* draft, int64_t n, const TokenMask* masks, bool logprobs, int n_top,
                      std::vector<Emitted>& out) {
  if (!sampler_) throw ArgumentError("no generation in progress: call start first");
  if (n < 0) throw ArgumentError("the draft length must be >= 0");
  if (stop_ != StopReason::None) return;
  if (queue_head_ != queue_.size()) throw ArgumentError("step() has tokens of this round still to hand out");
  StopReason why = check_end();
  if (why != StopReason::None) return end(why);
  round(draft, n, masks, logprobs, n_top);
  if (queue_.empty()) return end(final_);
  for (Emitted& e : queue_) out.push_back(std::move(e));
  n_generated_ += static_cast<int64_t>(queue_.size());
  queue_.clear();
  queue_head_ = 0;
}

void Session::pay_logits() {
  if (owed_rows_ == 0) return;
  ctx_.step_logits(owed_rows_);  // the round's chunk is still the context's last
  owed_rows_ = 0;
}

const float* Session::logits() {
  pay_logits();
  return logits_all_ ? all_logits_.data() : ctx_.logits();
}

int64_t Session::n_logit_rows() {
  pay_logits();
  return logits_all_ ? static_cast<int64_t>(all_logits_.size()) / ctx_.model().config().n_vocab : ctx_.n_logit_rows();
}

void Session::truncate(int64_t n) {
  ctx_.truncate(n);
  keys_.resize(static_cast<size_t>(n));
  sampler_.reset();
  pending_ = -1;
  queue_.clear();
  queue_head_ = 0;
}

}  // namespace bluelm
