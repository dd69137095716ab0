// Prompt lookup decoding: the draft is what followed the earlier occurrence
// of the sequence's end that agrees with it longest (agreement counted back to
// ngram_max tokens; the latest occurrence among equally long ones), searched
// over the prompt and the output so far. Outputs that repeat their input
// (rewriting, extraction, code edits) are drafted for free; where no
// occurrence agrees on at least ngram_min tokens, nothing is proposed and the
// step is a plain one. The draft's kind is the agreement's length: the longer
// the sequence agrees with the source, the likelier the copy goes on (the
// session keeps an acceptance estimate per length, see session.cpp).
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
