#include "runtime/session.h"

#include <algorithm>
#include <string>

#include "core/errors.h"

namespace bluelm {

Session::Session(std::shared_ptr<const LlmModel> model, int64_t n_ctx, int64_t n_batch, int n_threads,
                 GgmlType kv_type)
    : ctx_(std::move(model), n_ctx, n_batch, n_threads, kv_type) {}

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
  if (ctx_.n_logit_rows() == 0 && !logits_all_) throw ArgumentError("no logits yet: prefill a prompt first");
  if (max_tokens < 0) throw ArgumentError("max_tokens must be >= 0, got " + std::to_string(max_tokens));
  sampler_.emplace(params, ctx_.model().config().n_vocab);
  eog_ = std::unordered_set<int32_t>(eog.begin(), eog.end());
  max_tokens_ = max_tokens;
  n_generated_ = 0;
  pending_ = -1;
  stop_ = StopReason::None;
  const size_t window = static_cast<size_t>(params.repeat_last_n);
  const size_t from = keys_.size() > window ? keys_.size() - window : 0;
  for (size_t i = from; i < keys_.size(); ++i) {
    if (!keys_[i].is_image) sampler_->accept(static_cast<int32_t>(keys_[i].value));
  }
}

std::optional<int32_t> Session::step(TokenMask mask, TokenLogprobs* logprobs, int n_top) {
  if (!sampler_ || stop_ != StopReason::None) {
    if (!sampler_) throw ArgumentError("no generation in progress: call start first");
    return std::nullopt;
  }
  auto end = [&](StopReason why) -> std::optional<int32_t> {
    stop_ = why;
    if (why == StopReason::Cancelled) cancel_ = false;
    return std::nullopt;
  };
  if (cancel_.load()) return end(StopReason::Cancelled);
  if (n_generated_ >= max_tokens_) return end(StopReason::MaxTokens);
  if (pending_ >= 0) {
    if (ctx_.n_past() >= ctx_.n_ctx()) return end(StopReason::ContextFull);
    ctx_.eval(&pending_, 1, false);  // a sampled id: inside the vocabulary
    keys_.push_back({ImageKey{}, false, pending_});
    logits_all_ = false;
    pending_ = -1;
  }
  const int64_t nv = ctx_.model().config().n_vocab;
  const float* last = logits() + (n_logit_rows() - 1) * nv;
  const int32_t tok = sampler_->sample(last, nv, mask, logprobs, n_top);
  if (eog_.count(tok)) return end(StopReason::EndOfGeneration);
  sampler_->accept(tok);
  pending_ = tok;
  ++n_generated_;
  return tok;
}

const float* Session::logits() const { return logits_all_ ? all_logits_.data() : ctx_.logits(); }

int64_t Session::n_logit_rows() const {
  return logits_all_ ? static_cast<int64_t>(all_logits_.size()) / ctx_.model().config().n_vocab : ctx_.n_logit_rows();
}

void Session::truncate(int64_t n) {
  ctx_.truncate(n);
  keys_.resize(static_cast<size_t>(n));
  sampler_.reset();
  pending_ = -1;
}

}  // namespace bluelm
