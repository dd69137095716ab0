#include "runtime/prompt_lookup.h"

#include <algorithm>
#include <string>

#include "core/errors.h"
#include "runtime/session.h"

namespace bluelm {

PromptLookup::PromptLookup(int ngram_min, int ngram_max) : ngram_min_(ngram_min), ngram_max_(ngram_max) {
  if (ngram_min < 1 || ngram_max < ngram_min || ngram_max > 16) {
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
  for (int n = ngram_max_; n >= ngram_min_; --n) {
    if (L < n + 1) continue;
    const int32_t* pat = s + L - n;
    if (std::find(pat, pat + n, -1) != pat + n) continue;
    // The latest earlier start j whose n tokens equal the pattern (j + n < L).
    for (int64_t j = L - n - 1; j >= 0; --j) {
      if (s[j + n - 1] != pat[n - 1] || !std::equal(pat, pat + n, s + j)) continue;
      out.kind = n;
      for (int64_t c = j + n; c < L && static_cast<int64_t>(out.tokens.size()) < req.max_tokens; ++c) {
        if (s[c] < 0) break;  // an image row
        out.tokens.push_back(s[c]);
        if (req.eog.count(s[c])) break;
      }
      return;
    }
  }
}

}  // namespace bluelm
