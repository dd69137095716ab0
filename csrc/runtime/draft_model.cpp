#include "runtime/draft_model.h"

#include <algorithm>
#include <string>

#include "core/errors.h"
#include "runtime/session.h"

namespace bluelm {

namespace {

// The draft must give token ids the target's meaning and hold its positions.
std::shared_ptr<const LlmModel> checked(std::shared_ptr<const LlmModel> model, const LlmModel& target, int64_t n_ctx) {
  const LlmModel& draft = *model;
  const int64_t nd = draft.config().n_vocab, nt = target.config().n_vocab;
  if (nd != nt) {
    throw ArgumentError("the draft model's vocabulary has " + std::to_string(nd) + " tokens but the target's has " +
                        std::to_string(nt) + ": a draft model must share the target's vocabulary");
  }
  const GGUFValue* a = draft.file().find("tokenizer.ggml.tokens");
  const GGUFValue* b = target.file().find("tokenizer.ggml.tokens");
  if (a && b && a->strs != b->strs) {
    size_t i = 0;
    while (i < a->strs.size() && i < b->strs.size() && a->strs[i] == b->strs[i]) ++i;
    throw ArgumentError("the draft model's vocabulary differs from the target's at token " + std::to_string(i) +
                        ": a draft model must share the target's vocabulary");
  }
  if (draft.config().n_ctx_train < n_ctx) {
    throw ArgumentError("the draft model's context (" + std::to_string(draft.config().n_ctx_train) +
                        " positions, its context_length) is smaller than the target's n_ctx=" + std::to_string(n_ctx) +
                        ": use a smaller n_ctx or a draft model with a longer context");
  }
  return model;
}

}  // namespace

DraftModel::DraftModel(std::shared_ptr<const LlmModel> model, const LlmModel& target, int64_t n_ctx, int64_t n_batch,
                       int n_threads, GgmlType kv_type)
    : ctx_(checked(std::move(model), target, n_ctx), n_ctx, n_batch, n_threads, kv_type) {}

void DraftModel::start(const SamplerParams& params, uint64_t seed) {
  SamplerParams p = params;
  p.seed = seed ^ 0x5DEECE66Dull;  // its own stream, reproducible from the target's seed
  sampler_.emplace(p, ctx_.model().config().n_vocab);
}

void DraftModel::draft(const DraftRequest& req, Draft& out) {
  out.clear();
  if (req.max_tokens <= 0 || !sampler_) return;
  want_.clear();
  for (const PositionKey& k : req.keys) {
    if (!k.is_image) want_.push_back(static_cast<int32_t>(k.value));
  }
  want_.push_back(req.pending);
  // Keep the longest common prefix, but run at least the last token (fresh logits).
  size_t keep = 0;
  const size_t limit = std::min(seq_.size(), want_.size() - 1);
  while (keep < limit && seq_[keep] == want_[keep]) ++keep;
  ctx_.truncate(static_cast<int64_t>(keep));
  seq_.resize(keep);
  const int64_t nv = ctx_.model().config().n_vocab;
  const int64_t room = ctx_.n_ctx() - static_cast<int64_t>(want_.size());
  if (room < 0) return;  // cannot happen while n_ctx >= the target's: nothing to draft from
  ctx_.eval(want_.data() + keep, static_cast<int64_t>(want_.size() - keep), false);
  seq_.assign(want_.begin(), want_.end());
  sampler_->follow(req.target);
  const int64_t k = std::min(req.max_tokens, room + 1);
  for (int64_t i = 0; i < k; ++i) {
    out.q.emplace_back();
    const int32_t x = sampler_->sample_draft(ctx_.logits(), nv, out.q.back());
    out.tokens.push_back(x);
    if (req.eog.count(x) || i + 1 == k) break;
    sampler_->accept(x);
    ctx_.eval(&x, 1, false);
    seq_.push_back(x);
  }
}

}  // namespace bluelm
