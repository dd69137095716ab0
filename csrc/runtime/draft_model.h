// A draft model: a smaller LLM with the target's vocabulary proposes the draft
// by sampling with the target's parameters (its own chain's distribution is
// the q of the accept/reject rule; greedy when the target is greedy). It keeps
// its own KV cache holding the target's tokens; each step brings it to the
// target's sequence by its longest common prefix (rejected drafts are cut off,
// accepted ones are already there) and then samples up to the draft length.
// Image rows are not shown to it (it has no vision tower): it drafts from the
// text around them, which only lowers its acceptance.
#pragma once
#include <memory>
#include <optional>

#include "llm/decoder.h"
#include "runtime/drafter.h"

namespace bluelm {

class DraftModel : public Drafter {
 public:
  // A cache of n_ctx positions (the target's). Throws ArgumentError when the
  // draft's vocabulary differs from the target's (size, or the token strings
  // of tokenizer.ggml.tokens) or its trained context is shorter than n_ctx.
  DraftModel(std::shared_ptr<const LlmModel> model, const LlmModel& target, int64_t n_ctx, int64_t n_batch,
             int n_threads, GgmlType kv_type);
  void start(const SamplerParams& params, uint64_t seed) override;
  void draft(const DraftRequest& req, Draft& out) override;
  const char* name() const override { return "draft_model"; }
  const LlmModel& model() const { return ctx_.model(); }

 private:
  Context ctx_;
  std::vector<int32_t> seq_;   // the tokens in ctx_'s cache
  std::vector<int32_t> want_;  // the target's tokens (a buffer)
  std::optional<Sampler> sampler_;
};

}  // namespace bluelm
