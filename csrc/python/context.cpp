// The Context binding: a session's prefill (segments, the scheduler, Ctrl-C)
// and its decode steps.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <thread>

#include "python/bindings.h"
#include "vision/vision_model.h"

namespace bluelm::binding {

std::vector<int32_t> to_token_ids(const py::handle& seq, const std::string& where) {
  std::vector<int32_t> out;
  for (const auto& v : seq) {
    int64_t id = 0;
    try {
      if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::int_>(v) || py::hasattr(v, "__index__"))) throw py::cast_error();
      id = v.cast<int64_t>();
    } catch (const py::cast_error&) {
      throw ArgumentError(where + "token ids must be integers, got " + std::string(py::str(py::type::of(v).attr("__name__"))) + " " + std::string(py::repr(v)).substr(0, 40));
    }
    if (id < INT32_MIN || id > INT32_MAX) throw ArgumentError(where + "token id " + std::to_string(id) + " is outside the vocabulary");
    out.push_back(static_cast<int32_t>(id));
  }
  return out;
}

TokenMask mask_of(const py::object& mask, int64_t n_vocab, py::buffer_info& keep) {
  if (mask.is_none()) return nullptr;
  keep = py::buffer(mask).request();
  const int64_t words = (n_vocab + 31) / 32;
  if (keep.itemsize != 4 || keep.ndim != 1 || keep.shape[0] != words || keep.strides[0] != 4) {
    throw ArgumentError("the token mask must be a contiguous 1-D array of " + std::to_string(words) + " 32-bit words");
  }
  return static_cast<const uint32_t*>(keep.ptr);
}

namespace {

GgmlType parse_kv_type(const std::string& s) {
  if (s == "f16") return GgmlType::F16;
  if (s == "f32") return GgmlType::F32;
  if (s == "q8_0" || s == "int8") return GgmlType::Q8_0;
  throw ArgumentError("kv_type must be 'f16', 'f32', 'q8_0' or 'int8', got '" + s + "'");
}

ImageKey parse_key(const py::handle& h, const std::string& where) {
  if (h.is_none()) return {};
  if (!py::isinstance<py::bytes>(h)) throw ArgumentError(where + ": an image key must be bytes");
  const std::string k = h.cast<std::string>();
  if (k.size() != 16) throw ArgumentError(where + ": an image key must be 16 bytes, got " + std::to_string(k.size()));
  ImageKey key;
  std::memcpy(&key.hi, k.data(), 8);
  std::memcpy(&key.lo, k.data() + 8, 8);
  return key;
}

py::object key_to_py(const PositionKey& k) {
  if (!k.is_image) return py::int_(k.value);
  char raw[16];
  std::memcpy(raw, &k.image.hi, 8);
  std::memcpy(raw + 8, &k.image.lo, 8);
  return py::make_tuple(py::bytes(raw, 16), k.value);
}

// ("tokens", ids) | ("embeddings", float32 [n, n_embd][, key]) | ("patches", float32 [n, 3, S, S][, out[, key]]),
// where out, float32 [n * n_out_tokens, n_embd], receives the image's embeddings and key (16 bytes)
// names the image for the prefix cache.
std::vector<PrefillSegment> parse_segments(const py::list& items, const Context& ctx, const VisionModel* vision,
                                           std::vector<py::array_t<float, py::array::c_style>>& keep) {
  std::vector<PrefillSegment> segs;
  const int64_t d = ctx.model().config().n_embd;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string where = "segment " + std::to_string(i);
    if (!py::isinstance<py::tuple>(items[i]) || py::len(items[i]) < 2 || py::len(items[i]) > 4) throw ArgumentError(where + " must be a (kind, data) tuple");
    const py::tuple t = items[i].cast<py::tuple>();
    const std::string kind = py::str(t[0]);
    PrefillSegment s;
    if (kind == "tokens") {
      if (t.size() != 2) throw ArgumentError(where + ": a tokens segment is (\"tokens\", ids)");
      s.kind = PrefillSegment::Kind::Tokens;
      s.tokens = to_token_ids(t[1], items.size() > 1 ? where + ": " : "");
    } else if (kind == "embeddings" && py::isinstance<py::int_>(t[1])) {
      // rows not computed: allowed only where the KV cache holds them all (Session::reusable)
      s.kind = PrefillSegment::Kind::Embeddings;
      s.n = t[1].cast<int64_t>();
      if (s.n <= 0 || t.size() != 3 || t[2].is_none()) throw ArgumentError(where + ": an image without rows needs a row count >= 1 and a key");
      s.key = parse_key(t[2], where);
    } else if (kind == "embeddings" || kind == "patches") {
      py::array a = t[1].cast<py::array>();
      if (!py::isinstance<py::array_t<float>>(a)) throw ArgumentError(where + ": " + kind + " must be float32, got " + std::string(py::str(a.dtype())));
      const bool patches = kind == "patches";
      const int64_t S = vision ? vision->config().image_size : 0;
      const bool ok = patches ? (vision && a.ndim() == 4 && a.shape(1) == 3 && a.shape(2) == S && a.shape(3) == S)
                              : (a.ndim() == 2 && a.shape(1) == d);
      if (patches && !vision) throw ArgumentError(where + " holds image patches but no vision model was given");
      if (!ok || a.shape(0) == 0) {
        std::string shape;
        for (py::ssize_t k = 0; k < a.ndim(); ++k) shape += (k ? ", " : "") + std::to_string(a.shape(k));
        throw ArgumentError(where + ": " + kind + " must have shape " + (patches ? "[n, 3, " + std::to_string(S) + ", " + std::to_string(S) + "]" : "[n, " + std::to_string(d) + "]") + " with n >= 1, got [" + shape + "]");
      }
      keep.push_back(py::array_t<float, py::array::c_style>::ensure(a));
      s.kind = patches ? PrefillSegment::Kind::Patches : PrefillSegment::Kind::Embeddings;
      s.data = keep.back().data();
      s.n = keep.back().shape(0);
      const size_t key_at = patches ? 3 : 2;
      if (t.size() > key_at) s.key = parse_key(t[key_at], where);
      if (!patches && t.size() > 3) throw ArgumentError(where + ": an embeddings segment is (\"embeddings\", rows[, key])");
      if (patches && t.size() >= 3 && !t[2].is_none()) {
        py::array o = t[2].cast<py::array>();
        const int64_t rows = s.n * vision->config().n_out_tokens;
        if (!py::isinstance<py::array_t<float>>(o) || !(o.flags() & py::array::c_style) || !o.writeable() || o.ndim() != 2 ||
            o.shape(0) != rows || o.shape(1) != d) {
          throw ArgumentError(where + ": the output array must be a writable C-contiguous float32 array of shape [" + std::to_string(rows) + ", " + std::to_string(d) + "]");
        }
        keep.push_back(py::array_t<float, py::array::c_style>::ensure(o));
        s.out = keep.back().mutable_data();
      }
    } else {
      throw ArgumentError(where + ": kind must be 'tokens', 'embeddings' or 'patches', got '" + kind + "'");
    }
    segs.push_back(std::move(s));
  }
  return segs;
}

py::dict stats_dict(const PrefillStats& st) {
  py::dict d;
  d["total_s"] = st.total_s;
  d["encode_s"] = st.encode_s;
  d["prefill_s"] = st.prefill_s;
  d["wait_s"] = st.wait_s;
  d["first_batch_s"] = st.first_batch_s;
  d["n_rows"] = st.n_rows;
  d["n_chunks"] = st.n_chunks;
  d["n_patches"] = st.n_patches;
  d["n_batches"] = st.n_batches;
  d["n_reused"] = st.n_reused;
  return d;
}

// Runs a prefill with the GIL released. One that may take long (more than one
// chunk, or image patches) runs on its own thread while this one, every 20 ms,
// takes the GIL to let Python handle signals: a KeyboardInterrupt cancels the
// request (the session rolls back) and is raised once it has stopped. This is
// the only Ctrl-C path; a decode step is short and returns to Python anyway.
PrefillStats run_request(ContextHandle& pc, bool long_running, const std::function<PrefillStats()>& fn) {
  if (!long_running) {
    py::gil_scoped_release nogil;
    return fn();
  }
  PrefillStats st;
  std::exception_ptr err;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::unique_ptr<py::error_already_set> interrupt;
  std::thread runner([&] {
    try {
      st = fn();
    } catch (...) {
      err = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(m);
    done = true;
    cv.notify_all();
  });
  for (;;) {
    {
      py::gil_scoped_release nogil;
      std::unique_lock<std::mutex> lock(m);
      if (cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return done; })) break;
    }
    if (!interrupt && PyErr_CheckSignals() != 0) {
      interrupt = std::make_unique<py::error_already_set>();  // fetches and clears the Python error
      pc.s->cancel();
    }
  }
  runner.join();
  if (interrupt) {
    pc.s->clear_cancel();  // the prefill may have ended before it saw the flag
    throw py::error_already_set(*interrupt);
  }
  if (err) std::rethrow_exception(err);
  return st;
}

int64_t request_rows(const std::vector<PrefillSegment>& segs, bool* has_patches) {
  int64_t rows = 0;
  for (const PrefillSegment& s : segs) {
    if (s.kind == PrefillSegment::Kind::Patches) *has_patches = true;
    rows += s.kind == PrefillSegment::Kind::Tokens ? static_cast<int64_t>(s.tokens.size()) : s.n;
  }
  return rows;
}

py::dict context_prefill(ContextHandle& pc, const py::list& items, std::shared_ptr<VisionModel> vision, bool overlap,
                         int n_threads_vision, int64_t vision_batch, int64_t first_batch, bool release_vision, bool reuse) {
  BusyGuard g(pc.busy);
  std::vector<py::array_t<float, py::array::c_style>> keep;
  const std::vector<PrefillSegment> segs = parse_segments(items, pc.s->context(), vision.get(), keep);
  PrefillOptions opt;
  opt.overlap = overlap;
  opt.n_threads_vision = n_threads_vision;
  opt.vision_batch = vision_batch;
  opt.first_batch = first_batch;
  opt.release_vision = release_vision;
  bool patches = false;
  const bool long_running = request_rows(segs, &patches) > pc.s->context().n_batch() || patches;
  Session& s = *pc.s;
  const VisionModel* vm = vision.get();
  return stats_dict(run_request(pc, long_running, [&] { return reuse ? s.prefill(segs, vm, opt) : s.append(segs, vm, opt); }));
}

// Appends one segment (eval / eval_embeddings), every row's logits when logits_all.
void context_append(ContextHandle& pc, PrefillSegment seg, bool logits_all) {
  PrefillOptions opt;
  opt.logits_all = logits_all;
  const int64_t rows = seg.kind == PrefillSegment::Kind::Tokens ? static_cast<int64_t>(seg.tokens.size()) : seg.n;
  if (rows == 0) throw ArgumentError(seg.kind == PrefillSegment::Kind::Tokens ? "eval needs at least one token" : "eval_embeddings needs at least one row");
  const std::vector<PrefillSegment> segs{std::move(seg)};
  Session& s = *pc.s;
  run_request(pc, rows > s.context().n_batch(), [&] { return s.append(segs, nullptr, opt); });
}

const char* stop_name(StopReason r) {
  switch (r) {
    case StopReason::None: return "none";
    case StopReason::EndOfGeneration: return "eog";
    case StopReason::MaxTokens: return "max_tokens";
    case StopReason::ContextFull: return "context_full";
    case StopReason::Cancelled: return "cancelled";
  }
  return "none";
}

}  // namespace

void bind_context(py::module_& m) {
  py::class_<ContextHandle> c(m, "Context");
  c.def(py::init([](std::shared_ptr<LlmModel> model, int64_t n_ctx, int64_t n_batch, int n_threads,
                       const std::string& kv_type) {
             auto pc = std::make_unique<ContextHandle>();
             if (n_threads <= 0) throw ArgumentError("n_threads must be >= 1, got " + std::to_string(n_threads));
             if (n_threads > 256) throw ArgumentError("n_threads must be <= 256, got " + std::to_string(n_threads));
             pc->s = std::make_unique<Session>(model, n_ctx, n_batch, n_threads, parse_kv_type(kv_type));
             return pc;
           }),
           py::arg("model"), py::arg("n_ctx"), py::arg("n_batch") = 128, py::arg("n_threads") = 1,
           py::arg("kv_type") = "f16")
      .def(
          "eval",
          [](ContextHandle& pc, const py::object& tokens, bool logits_all) {
            BusyGuard g(pc.busy);
            PrefillSegment seg;
            seg.tokens = to_token_ids(tokens, "");
            context_append(pc, std::move(seg), logits_all);
          },
          py::arg("tokens"), py::arg("logits_all") = false, "Append tokens at n_past (a prefill through the scheduler).")
      .def(
          "eval_embeddings",
          [](ContextHandle& pc, py::array emb, bool logits_all) {
            BusyGuard g(pc.busy);
            const int64_t d = pc.s->context().model().config().n_embd;
            if (!py::isinstance<py::array_t<float>>(emb)) throw ArgumentError("embeddings must be float32, got " + std::string(py::str(emb.dtype())));
            if (emb.ndim() != 2 || emb.shape(1) != d) {
              throw ArgumentError("embeddings must have shape [n, " + std::to_string(d) + "], got " + std::string(py::str(py::tuple(py::cast(std::vector<py::ssize_t>(emb.shape(), emb.shape() + emb.ndim()))))));
            }
            auto a = py::array_t<float, py::array::c_style>::ensure(emb);
            PrefillSegment seg;
            seg.kind = PrefillSegment::Kind::Embeddings;
            seg.data = a.data();
            seg.n = a.shape(0);
            context_append(pc, std::move(seg), logits_all);
          },
          py::arg("emb"), py::arg("logits_all") = false)
      .def("logits",
           [](ContextHandle& pc) {
             BusyGuard g(pc.busy);
             const int64_t rows = pc.s->n_logit_rows(), nv = pc.s->context().model().config().n_vocab;
             if (rows == 0) throw ArgumentError("no logits yet: call eval first");
             py::array_t<float> out = rows == 1 ? py::array_t<float>(std::vector<py::ssize_t>{nv}) : py::array_t<float>(std::vector<py::ssize_t>{rows, nv});
             std::memcpy(out.mutable_data(), pc.s->logits(), sizeof(float) * rows * nv);
             return out;
           })
      .def_property_readonly("n_past", [](ContextHandle& pc) { return pc.s->n_past(); })
      .def_property_readonly("n_ctx", [](ContextHandle& pc) { return pc.s->context().n_ctx(); })
      .def_property_readonly("n_batch", [](ContextHandle& pc) { return pc.s->context().n_batch(); })
      .def_property_readonly("n_threads", [](ContextHandle& pc) { return pc.s->context().n_threads(); })
      .def_property_readonly("n_vocab", [](ContextHandle& pc) { return pc.s->context().model().config().n_vocab; })
      .def("truncate", [](ContextHandle& pc, int64_t n) { BusyGuard g(pc.busy); pc.s->truncate(n); }, py::arg("n"))
      .def("prefill", &context_prefill, py::arg("segments"), py::arg("vision") = py::none(), py::arg("overlap") = true,
           py::arg("n_threads_vision") = 1, py::arg("vision_batch") = 4, py::arg("first_batch") = 1,
           py::arg("release_vision") = false, py::arg("reuse") = false,
           "Prefill (kind, data) segments, encoding patches on their own threads while the LLM runs; returns stage "
           "times. reuse=True keeps the longest cached prefix and runs only the rest (the cache then holds exactly "
           "the segments); reuse=False appends at n_past.")
      .def("reusable",
           [](ContextHandle& pc, const py::list& items, std::shared_ptr<VisionModel> vision) {
             std::vector<py::array_t<float, py::array::c_style>> keep;
             return pc.s->reusable(parse_segments(items, pc.s->context(), vision.get(), keep), vision.get());
           },
           py::arg("segments"), py::arg("vision") = py::none(),
           "How many leading positions prefill(segments, reuse=True) would keep from the cache.")
      .def("cached",
           [](ContextHandle& pc) {
             py::list out;
             for (const PositionKey& k : pc.s->keys()) out.append(key_to_py(k));
             return out;
           },
           "One key per cached position: a token id, or (image key, row).")
      .def("start",
           [](ContextHandle& pc, const SamplerParams& params, const std::vector<int32_t>& eog, int64_t max_tokens) {
             BusyGuard g(pc.busy);
             pc.s->start(params, eog, max_tokens);
           },
           py::arg("params"), py::arg("eog"), py::arg("max_tokens"),
           "Start a generation from the current logits (see step).")
      .def("step",
           [](ContextHandle& pc, const py::object& mask) -> py::object {
             BusyGuard g(pc.busy);
             py::buffer_info keep;
             const TokenMask mk = mask_of(mask, pc.s->context().model().config().n_vocab, keep);
             std::optional<int32_t> tok;
             {
               py::gil_scoped_release nogil;
               tok = pc.s->step(mk);
             }
             return tok ? py::object(py::int_(*tok)) : py::none();
           },
           py::arg("mask") = py::none(),
           "Evaluate the token returned last, sample the next: its id, or None once the generation ended (stop_reason). "
           "mask: allowed tokens, one bit each (llguidance's bitmask).")
      .def("step_logprobs",
           [](ContextHandle& pc, const py::object& mask, int n_top) -> py::object {
             BusyGuard g(pc.busy);
             py::buffer_info keep;
             const TokenMask mk = mask_of(mask, pc.s->context().model().config().n_vocab, keep);
             TokenLogprobs lp;
             std::optional<int32_t> tok;
             {
               py::gil_scoped_release nogil;
               tok = pc.s->step(mk, &lp, n_top);
             }
             if (!tok) return py::none();
             py::list top;
             for (const auto& [id, v] : lp.top) top.append(py::make_tuple(id, v));
             return py::make_tuple(*tok, lp.chosen, top);
           },
           py::arg("mask") = py::none(), py::arg("n_top") = 0,
           "As step, and the token's log-probability with the n_top most likely tokens': (id, logprob, [(id, logprob)]).")
      .def_property_readonly("stop_reason", [](ContextHandle& pc) { return stop_name(pc.s->stop_reason()); },
                             "Why the generation ended: none, eog, max_tokens, context_full or cancelled.")
      .def("cancel", [](ContextHandle& pc) { pc.s->cancel(); }, "Stop the request in flight (thread-safe); a prefill rolls back and raises CancelledError, a generation ends.")
      .def("clear_cancel", [](ContextHandle& pc) { pc.s->clear_cancel(); }, "Drop a cancel that no request consumed.")
      .def_property_readonly("cancel_pending", [](ContextHandle& pc) { return pc.s->cancel_pending(); })
      .def("reset", [](ContextHandle& pc) { BusyGuard g(pc.busy); pc.s->truncate(0); });
  bind_draft(c);
}

}  // namespace bluelm::binding
