// Prompt lookup decoding: the draft is what followed the latest earlier
// occurrence of the sequence's last n tokens (n from ngram_max down to
// ngram_min, the longest that occurs wins), searched over the prompt and the
// output so far. Outputs that repeat their input (rewriting, extraction, code
// edits) are drafted for free; where nothing matches, nothing is proposed and
// the step is a plain one.
#pragma once
#include "runtime/drafter.h"

namespace bluelm {

class PromptLookup : public Drafter {
 public:
  PromptLookup(int ngram_min, int ngram_max);
  void start(const SamplerParams&, uint64_t) override {}
  void draft(const DraftRequest& req, Draft& out) override;
  const char* name() const override { return "prompt_lookup"; }

 private:
  int ngram_min_, ngram_max_;
  std::vector<int32_t> seq_;  // the sequence as ids (a buffer kept between steps)
};

}  // namespace bluelm
