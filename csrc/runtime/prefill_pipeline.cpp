#include "runtime/prefill_pipeline.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "core/errors.h"
#include "core/seconds_since.h"
#include "runtime/batch_channel.h"
#include "vision/vision_encoder.h"

namespace bluelm {

namespace {

using Clock = std::chrono::steady_clock;

// Encodes every Patches segment in order, batch by batch, into the channel.
class PatchProducer {
 public:
  PatchProducer(const VisionModel& vm, const std::vector<PrefillSegment>& segs, const PrefillOptions& opt,
                const std::atomic<bool>& cancel, BatchChannel& out)
      : vm_(vm), segs_(segs), opt_(opt), cancel_(cancel), out_(out) {}

  void run() {
    try {
      encode_all();
      // The encoder's buffers and this thread's hold on the weights are gone here.
      if (opt_.release_vision) vm_.release_weights();
    } catch (...) {
      out_.fail(std::current_exception());
    }
  }

  double encode_s = 0, first_batch_s = 0;
  int64_t n_patches = 0, n_batches = 0;

 private:
  void encode_all() {
    const Clock::time_point t0 = Clock::now();
    // Acquired here, so a reload after release_weights() (and its errors) happens on this thread.
    const std::shared_ptr<const LoadedVision> l = vm_.acquire();
    const VisionConfig& c = vm_.config();
    int64_t max_n = 1;
    for (const PrefillSegment& s : segs_) {
      if (s.kind == PrefillSegment::Kind::Patches) max_n = std::max(max_n, s.n);
    }
    VisionEncoder enc(c, *l->weights, std::min(opt_.vision_batch, max_n), opt_.n_threads_vision);
    const int64_t per_in = 3 * c.image_size * c.image_size, per_out = c.n_out_tokens * c.proj_dim;
    for (const PrefillSegment& s : segs_) {
      if (s.kind != PrefillSegment::Kind::Patches) continue;
      for (int64_t i = 0, m = 0; i < s.n; i += m) {
        if (cancel_.load() || out_.closed()) return;
        const int64_t want = n_batches == 0 ? std::min(opt_.first_batch, opt_.vision_batch) : opt_.vision_batch;
        m = std::min(want, s.n - i);
        EmbeddingBatch b;
        b.rows.resize(static_cast<size_t>(m * per_out));
        b.n_rows = m * c.n_out_tokens;
        const Clock::time_point tb = Clock::now();
        enc.run(s.data + i * per_in, m, true, b.rows.data());
        encode_s += seconds_since(tb);
        vm_.count_encoded(m);
        n_patches += m;
        if (n_batches++ == 0) first_batch_s = seconds_since(t0);
        if (!out_.push(std::move(b))) return;
      }
    }
  }

  const VisionModel& vm_;
  const std::vector<PrefillSegment>& segs_;
  const PrefillOptions& opt_;
  const std::atomic<bool>& cancel_;
  BatchChannel& out_;
};

// Gathers rows into n_batch chunks per segment and prefills them. A chunk never
// spans segments, so it is all token ids (looked up by the decoder, which knows
// the arch's token-only embedding scale) or all embedding rows.
class ChunkFeeder {
 public:
  // all_logits: when set, every row's logits are appended to it (logits_all).
  // max_rows: the longest chunk this request can make (a decode-sized request
  // allocates one row, not n_batch).
  ChunkFeeder(Context& ctx, const std::atomic<bool>& cancel, PrefillStats& st, std::vector<float>* all_logits,
              int64_t max_rows)
      : ctx_(ctx), d_(ctx.model().config().n_embd), cancel_(cancel), st_(st), all_logits_(all_logits),
        cap_(std::min(ctx.n_batch(), max_rows)) {}

  float* next_row() {
    if (staging_.empty()) staging_.resize(static_cast<size_t>(cap_ * d_));
    return staging_.data() + fill_ * d_;
  }

  // One row was written at next_row(), or one token id is given; runs the chunk
  // when it is full or the segment ends.
  void commit(bool segment_end, bool want_logits) { advance(segment_end, want_logits); }
  void commit_token(int32_t id, bool segment_end, bool want_logits) {
    if (tokens_.empty()) tokens_.resize(static_cast<size_t>(cap_));
    tokens_[fill_] = id;
    tokens_chunk_ = true;
    advance(segment_end, want_logits);
  }

 private:
  void advance(bool segment_end, bool want_logits) {
    ++fill_;
    if (fill_ == ctx_.n_batch() || segment_end) flush(segment_end && want_logits);
  }

  void flush(bool want_logits) {
    if (cancel_.load()) throw CancelledError("prefill cancelled");
    const Clock::time_point t0 = Clock::now();
    if (all_logits_) {
      if (tokens_chunk_) ctx_.eval(tokens_.data(), fill_, true);
      else ctx_.eval_embeddings(staging_.data(), fill_, true);
      all_logits_->insert(all_logits_->end(), ctx_.logits(), ctx_.logits() + fill_ * ctx_.model().config().n_vocab);
    } else if (tokens_chunk_) {
      ctx_.prefill_tokens(tokens_.data(), fill_, want_logits);
    } else {
      ctx_.prefill_embeddings(staging_.data(), fill_, want_logits);
    }
    st_.prefill_s += seconds_since(t0);
    st_.n_rows += fill_;
    ++st_.n_chunks;
    fill_ = 0;
    tokens_chunk_ = false;
  }

  Context& ctx_;
  const int64_t d_;
  const std::atomic<bool>& cancel_;
  PrefillStats& st_;
  std::vector<float>* all_logits_;
  const int64_t cap_;  // rows per chunk
  std::vector<float> staging_;   // embedding rows of the chunk (allocated on first use)
  std::vector<int32_t> tokens_;  // or its token ids
  bool tokens_chunk_ = false;
  int64_t fill_ = 0;
};

void check_segments(const Context& ctx, const VisionModel* vision, const std::vector<PrefillSegment>& segs,
                    const PrefillOptions& opt) {
  const LlmConfig& lc = ctx.model().config();
  if (segs.empty()) throw ArgumentError("prefill needs at least one segment");
  if (opt.n_threads_vision <= 0 || opt.n_threads_vision > 256) throw ArgumentError("n_threads_vision must be between 1 and 256, got " + std::to_string(opt.n_threads_vision));
  if (opt.vision_batch <= 0 || opt.vision_batch > 256) throw ArgumentError("vision_batch must be between 1 and 256, got " + std::to_string(opt.vision_batch));
  if (opt.first_batch <= 0 || opt.first_batch > 256) throw ArgumentError("first_batch must be between 1 and 256, got " + std::to_string(opt.first_batch));
  int64_t total = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    const PrefillSegment& s = segs[i];
    const std::string where = "segment " + std::to_string(i);
    if (s.kind == PrefillSegment::Kind::Patches) {
      if (!vision) throw ArgumentError(where + " holds image patches but no vision model was given");
      if (vision->config().proj_dim != lc.n_embd) {
        throw ArgumentError("the vision projector outputs " + std::to_string(vision->config().proj_dim) + " values per token but the LLM's n_embd is " + std::to_string(lc.n_embd));
      }
    }
    check_token_ids(s.tokens.data(), static_cast<int64_t>(s.tokens.size()), lc.n_vocab, segs.size() > 1 ? where + ": " : "");
    if (s.kind == PrefillSegment::Kind::Patches && (s.skip < 0 || s.skip >= s.n * vision->config().n_out_tokens)) {
      throw ArgumentError(where + ": skip " + std::to_string(s.skip) + " is outside the image's rows");
    }
    const int64_t rows = segment_rows(s, vision ? vision->config().n_out_tokens : 0);
    if (rows <= 0) throw ArgumentError(where + " is empty");
    total += rows;
  }
  if (total > ctx.n_ctx() - ctx.n_past()) {
    throw ContextOverflowError(std::to_string(total) + " positions do not fit in the context: " + std::to_string(ctx.n_past()) + " of n_ctx=" + std::to_string(ctx.n_ctx()) + " are used");
  }
}

}  // namespace

int64_t segment_rows(const PrefillSegment& s, int64_t tokens_per_patch) {
  switch (s.kind) {
    case PrefillSegment::Kind::Tokens: return static_cast<int64_t>(s.tokens.size());
    case PrefillSegment::Kind::Embeddings: return s.n;
    case PrefillSegment::Kind::Patches: return s.n * tokens_per_patch - s.skip;
  }
  return 0;
}

void check_token_ids(const int32_t* tokens, int64_t n, int64_t n_vocab, const std::string& where) {
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= n_vocab) {
      throw ArgumentError(where + "token id " + std::to_string(tokens[t]) + " at index " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
    }
  }
}

PrefillStats prefill_segments(Context& ctx, const VisionModel* vision, const std::vector<PrefillSegment>& segs,
                              const PrefillOptions& opt, const std::atomic<bool>& cancel) {
  check_segments(ctx, vision, segs, opt);
  const Clock::time_point t0 = Clock::now();
  const int64_t start = ctx.n_past();
  const bool has_patches = std::any_of(segs.begin(), segs.end(), [](const PrefillSegment& s) { return s.kind == PrefillSegment::Kind::Patches; });
  PrefillStats st;
  BatchChannel channel(opt.overlap ? std::max<size_t>(opt.queue_capacity, 1) : 0);
  std::unique_ptr<PatchProducer> producer;
  std::thread worker;
  auto stop_producer = [&] {
    channel.close();
    if (worker.joinable()) worker.join();
  };
  try {
    if (has_patches) {
      producer = std::make_unique<PatchProducer>(*vision, segs, opt, cancel, channel);
      if (opt.overlap) worker = std::thread([&] { producer->run(); });
      else producer->run();  // sequential: every batch is queued before the LLM starts
    }
    const LlmModel& M = ctx.model();
    const int64_t d = M.config().n_embd;
    if (opt.all_logits) opt.all_logits->clear();
    int64_t longest = 0;
    for (const PrefillSegment& s : segs) longest = std::max(longest, segment_rows(s, has_patches ? vision->config().n_out_tokens : 0));
    ChunkFeeder feeder(ctx, cancel, st, opt.logits_all ? opt.all_logits : nullptr, longest);
    EmbeddingBatch batch;
    int64_t used = 0;  // rows of `batch` already consumed
    std::vector<float> skipped(static_cast<size_t>(has_patches ? d : 0));  // cached rows of a patches segment
    for (size_t si = 0; si < segs.size(); ++si) {
      const PrefillSegment& s = segs[si];
      const bool last_seg = si + 1 == segs.size();
      const int64_t skip = s.kind == PrefillSegment::Kind::Patches ? s.skip : 0;
      const int64_t rows = skip + segment_rows(s, has_patches ? vision->config().n_out_tokens : 0);
      for (int64_t r = 0; r < rows; ++r) {
        if (s.kind == PrefillSegment::Kind::Tokens) {
          feeder.commit_token(s.tokens[r], r + 1 == rows, last_seg);
          continue;
        }
        // Rows already in the KV cache are encoded (the image is one unit) but not prefilled.
        float* dst = r < skip ? skipped.data() : feeder.next_row();
        if (s.kind == PrefillSegment::Kind::Embeddings) {
          std::memcpy(dst, s.data + r * d, sizeof(float) * d);
        } else {
          if (used == batch.n_rows) {
            const Clock::time_point tw = Clock::now();
            batch = EmbeddingBatch();  // free the spent batch before waiting for the next
            if (!channel.pop(batch, cancel)) throw CancelledError("prefill cancelled");
            st.wait_s += seconds_since(tw);
            used = 0;
          }
          std::memcpy(dst, batch.rows.data() + used * d, sizeof(float) * d);
          if (s.out) std::memcpy(s.out + r * d, dst, sizeof(float) * d);
          ++used;
        }
        if (r >= skip) feeder.commit(r + 1 == rows, last_seg);
      }
    }
    stop_producer();
  } catch (...) {
    stop_producer();
    ctx.truncate(start);
    throw;
  }
  if (producer) {
    st.encode_s = producer->encode_s;
    st.first_batch_s = producer->first_batch_s;
    st.n_patches = producer->n_patches;
    st.n_batches = producer->n_batches;
  }
  st.total_s = seconds_since(t0);
  return st;
}

}  // namespace bluelm
