#include "runtime/prompt_lookup.h"

#include <string>

#include "core/errors.h"
#include "runtime/session.h"

namespace bluelm {

PromptLookup::PromptLookup(int ngram_min, int ngram_max) : ngram_min_(ngram_min), ngram_max_(ngram_max) {
  static_assert(kDraftKinds == 17, "an agreement length is a kind: the message below says 16");
  if (ngram_min < 1 || ngram_max < ngram_min || ngram_max >= kDraftKinds) {
    throw ArgumentError("prompt lookup n-grams must satisfy 1 <= ngram_min <= ngram_max <= 16, got " +
                        std::to_string(ngram_min) + " and " + std::to_string(ngram_max));
  }
}

void PromptLookup::draft(const DraftRequest& req, Draft& out) {
  out.clear();
  if (req.max_tokens <= 0) return;
  // The sequence as token ids (image rows: -1, which match nothing).
  seq_.clear();
  for (const PositionKey& k : req.keys) seq_.push_back(k.is_image ? -1 : static_cast<int32_t>(k.value));
  seq_.push_back(req.pending);
  const int64_t L = static_cast<int64_t>(seq_.size());
  const int32_t* s = seq_.data();
  if (s[L - 1] < 0) return;
  // Each earlier position e holding the last token: how far back s[..e] and
  // the sequence's end agree (at most ngram_max). The longest wins; scanning
  // from the end, the latest among equals.
  int64_t best_end = -1, best = ngram_min_ - 1;
  for (int64_t e = L - 2; e >= 0 && best < ngram_max_; --e) {
    if (s[e] != s[L - 1]) continue;
    int64_t m = 1;
    while (m < ngram_max_ && e - m >= 0 && s[e - m] >= 0 && s[e - m] == s[L - 1 - m]) ++m;
    if (m > best) {
      best = m;
      best_end = e;
    }
  }
  if (best_end < 0) return;
  out.kind = static_cast<int>(best);
  for (int64_t c = best_end + 1; c < L && static_cast<int64_t>(out.tokens.size()) < req.max_tokens; ++c) {
    if (s[c] < 0) break;  // an image row
    out.tokens.push_back(s[c]);
    if (req.eog.count(s[c])) break;
  }
}

}  // namespace bluelm
