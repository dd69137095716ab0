// The pybind11 module bluelm_cpp._core: bindings only, no logic of its own.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <string>

#include "core/bandwidth_probe.h"
#include "core/errors.h"
#include "core/gguf_file.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "llm/decoder.h"
#include "llm/sampler.h"
#include "runtime/prefill_pipeline.h"
#include "runtime/session.h"
#include "vision/vision_model.h"

namespace py = pybind11;
using namespace bluelm;

namespace {

// Raises the Python exception class `name` of bluelm_cpp.errors.
[[noreturn]] void raise_py(const char* name, const char* msg) {
  py::object cls = py::module_::import("bluelm_cpp.errors").attr(name);
  PyErr_SetString(cls.ptr(), msg);
  throw py::error_already_set();
}

void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const FormatError& e) {
    raise_py("ModelFormatError", e.what());
  } catch (const FileError& e) {
    raise_py("ModelFileError", e.what());
  } catch (const ArgumentError& e) {
    raise_py("InvalidArgumentError", e.what());
  } catch (const ContextOverflowError& e) {
    raise_py("ContextOverflowError", e.what());
  } catch (const CancelledError& e) {
    raise_py("CancelledError", e.what());
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError, "bluelm-cpp: out of memory");
  }
}

py::str utf8(const std::string& s, const std::string& where) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
  if (!o) {
    PyErr_Clear();
    throw FormatError(where + " is not valid UTF-8");
  }
  return py::reinterpret_steal<py::str>(o);
}

py::object value_to_py(const GGUFValue& v, const std::string& key) {
  switch (v.type) {
    case GGUFValueType::STRING: return utf8(v.str, "metadata key '" + key + "'");
    case GGUFValueType::BOOL: return py::bool_(v.as_int() != 0);
    case GGUFValueType::FLOAT32:
    case GGUFValueType::FLOAT64: return py::float_(v.as_double());
    case GGUFValueType::ARRAY: {
      py::list out(v.count);
      if (v.elem_type == GGUFValueType::STRING) {
        for (uint64_t i = 0; i < v.count; ++i) out[i] = utf8(v.strs[i], "metadata key '" + key + "' item " + std::to_string(i));
      } else if (v.elem_type == GGUFValueType::FLOAT32 || v.elem_type == GGUFValueType::FLOAT64) {
        for (uint64_t i = 0; i < v.count; ++i) out[i] = py::float_(v.array_double(i));
      } else if (v.elem_type == GGUFValueType::BOOL) {
        for (uint64_t i = 0; i < v.count; ++i) out[i] = py::bool_(v.array_int(i) != 0);
      } else {
        for (uint64_t i = 0; i < v.count; ++i) out[i] = py::int_(v.array_int(i));
      }
      return std::move(out);
    }
    default: return py::int_(v.as_int());
  }
}

py::dict metadata_dict(const GGUFFile& f) {
  py::dict d;
  for (const auto& k : f.keys()) d[utf8(k, "a metadata key")] = value_to_py(*f.find(k), k);
  return d;
}

py::list tensor_list(const GGUFFile& f) {
  py::list out;
  for (const auto& t : f.tensors()) {
    py::dict d;
    d["name"] = utf8(t.name, "a tensor name");
    d["type"] = t.type;
    d["type_name"] = type_name(t.type);
    py::list shape;
    for (int i = 0; i < t.n_dims; ++i) shape.append(t.ne[i]);
    d["shape"] = shape;
    d["offset"] = t.offset;
    d["nbytes"] = t.nbytes;
    out.append(d);
  }
  return out;
}

GgmlType parse_kv_type(const std::string& s) {
  if (s == "f16") return GgmlType::F16;
  if (s == "f32") return GgmlType::F32;
  if (s == "q8_0" || s == "int8") return GgmlType::Q8_0;
  throw ArgumentError("kv_type must be 'f16', 'f32', 'q8_0' or 'int8', got '" + s + "'");
}

// One Python-visible session; the mutex refuses concurrent use from two threads.
struct ContextHandle {
  std::unique_ptr<Session> s;
  std::mutex busy;
};

class BusyGuard {
 public:
  explicit BusyGuard(std::mutex& m) : lock_(m, std::try_to_lock) {
    if (!lock_.owns_lock()) throw ArgumentError("this context is already in use by another thread; use one Model per thread or serialise calls");
  }
 private:
  std::unique_lock<std::mutex> lock_;
};

// Python ints -> int32 ids (only the narrowing is checked here; the vocabulary
// is checked once, by the runtime's check_token_ids).
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

// The vision keys of the file (clip.*, bluelm.vision.*) plus derived sizes.
py::dict vision_config_dict(const VisionModel& vm) {
  py::dict d;
  const std::shared_ptr<const LoadedVision> l = vm.acquire();
  const GGUFFile& f = *l->file;
  for (const auto& k : f.keys()) {
    if (k.rfind("clip.", 0) == 0 || k.rfind("bluelm.vision.", 0) == 0) d[utf8(k, "a metadata key")] = value_to_py(*f.find(k), k);
  }
  const VisionConfig& c = vm.config();
  d["n_tokens"] = c.n_tokens;
  d["n_out_tokens"] = c.n_out_tokens;
  d["projector"] = c.projector_name;
  d["weight_type"] = type_name(static_cast<uint32_t>(l->weights->main_type));
  d["has_post_ln"] = l->weights->post_ln_w.data != nullptr;
  d["has_image_newline"] = l->weights->image_newline.data != nullptr;
  // What the file's keys and names resolve to (legacy llama.cpp files included).
  d["proj_dim"] = c.proj_dim;
  d["n_layer"] = c.n_layer;
  d["image_newline_tensor"] = c.image_newline_name.empty() ? py::object(py::none()) : py::object(py::str(c.image_newline_name));
  d["ffn_naming"] = c.ffn_naming == FfnNaming::LegacySwapped ? "legacy_swapped" : "standard";
  return d;
}

py::array_t<float> vision_encode(const VisionModel& vm, py::array pixels, bool project, int n_threads,
                                 int64_t batch_size) {
  const VisionConfig& c = vm.config();
  const int64_t S = c.image_size;
  if (!py::isinstance<py::array_t<float>>(pixels)) throw ArgumentError("pixels must be float32, got " + std::string(py::str(pixels.dtype())));
  if (pixels.ndim() != 4 || pixels.shape(1) != 3 || pixels.shape(2) != S || pixels.shape(3) != S || pixels.shape(0) == 0) {
    std::string shape;
    for (py::ssize_t i = 0; i < pixels.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(pixels.shape(i));
    throw ArgumentError("pixels must have shape [B, 3, " + std::to_string(S) + ", " + std::to_string(S) + "] with B >= 1, got [" + shape + "]");
  }
  auto a = py::array_t<float, py::array::c_style>::ensure(pixels);
  const int64_t B = a.shape(0);
  const int64_t T = project ? c.n_out_tokens : c.n_tokens, D = project ? c.proj_dim : c.n_embd;
  py::array_t<float> out({B, T, D});
  const float* in = a.data();
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    vm.encode(in, B, project, n_threads, batch_size, o);
  }
  return out;
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

// A bitmask of allowed tokens (llguidance's layout), checked for size; nullptr for None.
TokenMask mask_of(const py::object& mask, int64_t n_vocab, py::buffer_info& keep) {
  if (mask.is_none()) return nullptr;
  keep = py::buffer(mask).request();
  const int64_t words = (n_vocab + 31) / 32;
  if (keep.itemsize != 4 || keep.ndim != 1 || keep.shape[0] != words || keep.strides[0] != 4) {
    throw ArgumentError("the token mask must be a contiguous 1-D array of " + std::to_string(words) + " 32-bit words");
  }
  return static_cast<const uint32_t*>(keep.ptr);
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

// -- SamplingParams: fields generated from for_each_field (llm/sampler.h) ------

void set_field(const char* name, const py::handle& v, float& f) {
  if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v))) {
    throw ArgumentError(std::string(name) + " must be a number, got " + std::string(py::str(py::type::of(v).attr("__name__"))));
  }
  f = v.cast<float>();
}

void set_field(const char* name, const py::handle& v, int32_t& f) {
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v)) {
    throw ArgumentError(std::string(name) + " must be an integer, got " + std::string(py::str(py::type::of(v).attr("__name__"))));
  }
  const py::int_ big = py::reinterpret_borrow<py::int_>(v);
  if (big < py::int_(INT32_MIN) || big > py::int_(INT32_MAX)) {
    throw ArgumentError(std::string(name) + " must be between " + std::to_string(INT32_MIN) + " and " + std::to_string(INT32_MAX) + ", got " + std::string(py::str(v)));
  }
  f = v.cast<int32_t>();
}

void set_field(const char* name, const py::handle& v, std::optional<uint64_t>& f) {
  if (v.is_none()) {
    f.reset();
    return;
  }
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v)) {
    throw ArgumentError(std::string(name) + " must be an integer or None, got " + std::string(py::str(py::type::of(v).attr("__name__"))));
  }
  const py::int_ big = py::reinterpret_borrow<py::int_>(v);
  if (big < py::int_(0) || big > py::int_(UINT64_MAX)) {
    throw ArgumentError(std::string(name) + " must be between 0 and 2**64 - 1, got " + std::string(py::str(v)));
  }
  f = v.cast<uint64_t>();
}

void set_field(const char* name, const py::handle& v, std::vector<std::pair<int32_t, float>>& f) {
  f.clear();
  if (v.is_none()) return;
  if (!py::isinstance<py::dict>(v)) throw ArgumentError(std::string(name) + " must be a dict {token id: bias}");
  for (const auto& [k, b] : py::reinterpret_borrow<py::dict>(v)) {
    int32_t tok = 0;
    float bias = 0;
    if (py::isinstance<py::str>(k)) {
      // JSON object keys are strings ("logit_bias": {"123": -100})
      try {
        set_field(name, py::int_(py::reinterpret_borrow<py::object>(k)), tok);
      } catch (const py::error_already_set&) {
        throw ArgumentError(std::string(name) + ": key '" + std::string(py::str(k)) + "' is not a token id");
      }
    } else {
      set_field(name, k, tok);
    }
    set_field(name, b, bias);
    f.emplace_back(tok, bias);
  }
}

py::object get_field(const float& f) {
  char buf[32];  // the shortest decimal that reads back as f (0.95, not 0.949999988)
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return py::float_(std::strtod(buf, nullptr));
}
py::object get_field(const int32_t& f) { return py::int_(f); }
py::object get_field(const std::optional<uint64_t>& f) { return f ? py::object(py::int_(*f)) : py::none(); }
py::object get_field(const std::vector<std::pair<int32_t, float>>& f) {
  py::dict d;
  for (const auto& [t, b] : f) d[py::int_(t)] = py::float_(b);
  return std::move(d);
}

SamplerParams params_from_kwargs(const py::kwargs& kw) {
  SamplerParams p;
  size_t used = 0;
  for_each_field(p, [&](const char* name, auto& field, const char*) {
    if (kw.contains(name)) {
      set_field(name, kw[name], field);
      ++used;
    }
  });
  if (used != kw.size()) {
    std::string unknown;
    for (const auto& item : kw) {
      const std::string key = py::str(item.first);
      bool known = false;
      for_each_field(p, [&](const char* name, auto&, const char*) { known = known || key == name; });
      if (!known) unknown += (unknown.empty() ? "" : ", ") + key;
    }
    throw ArgumentError("unknown sampling argument(s): " + unknown);
  }
  p.validate();
  return p;
}

std::string params_repr(const SamplerParams& p) {
  std::string out = "SamplingParams(";
  bool first = true;
  for_each_field(p, [&](const char* name, const auto& field, const char*) {
    out += (first ? "" : ", ") + std::string(name) + "=" + std::string(py::repr(get_field(field)));
    first = false;
  });
  return out + ")";
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "bluelm-cpp native core (GGUF reader, kernels, LLaMA-family decoder, sampler)";
  py::register_exception_translator(&translate);

  m.def("isa", [] { return std::string(kernels::active().isa); }, "Name of the kernel table in use.");
  m.def("available_isas", [] {
    const kernels::KernelTable* t[16];
    const int n = kernels::available(t, 16);
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.emplace_back(t[i]->isa);
    return out;
  });
  m.def("physical_cores", &physical_cores);
  m.def(
      "read_bandwidth",
      [](size_t bytes, int n_threads, int passes) {
        if (n_threads < 1 || n_threads > 256) throw ArgumentError("n_threads must be in [1, 256]");
        py::gil_scoped_release nogil;
        return read_bandwidth(bytes, n_threads, passes);
      },
      py::arg("bytes") = size_t(512) << 20, py::arg("n_threads") = 1, py::arg("passes") = 5,
      "Best-of-passes memory read bandwidth in bytes/s (benchmark roofline).");

  py::class_<GGUFFile, std::shared_ptr<GGUFFile>>(m, "GGUFFile")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release nogil;
             return std::make_shared<GGUFFile>(path);
           }),
           py::arg("path"))
      .def_property_readonly("path", &GGUFFile::path)
      .def_property_readonly("version", &GGUFFile::version)
      .def_property_readonly("alignment", &GGUFFile::alignment)
      .def_property_readonly("file_size", &GGUFFile::file_size)
      .def_property_readonly("data_offset", &GGUFFile::data_offset)
      .def_property_readonly("metadata", &metadata_dict)
      .def_property_readonly("tensors", &tensor_list);

  py::class_<LlmModel, std::shared_ptr<LlmModel>>(m, "LlamaModel")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release nogil;
             return std::make_shared<LlmModel>(path);
           }),
           py::arg("path"))
      .def_property_readonly("metadata", [](const LlmModel& mo) { return metadata_dict(mo.file()); })
      .def_property_readonly("tensors", [](const LlmModel& mo) { return tensor_list(mo.file()); })
      .def_property_readonly("arch", [](const LlmModel& mo) { return mo.config().arch; })
      .def_property_readonly("n_vocab", [](const LlmModel& mo) { return mo.config().n_vocab; })
      .def_property_readonly("n_embd", [](const LlmModel& mo) { return mo.config().n_embd; })
      .def_property_readonly("n_layer", [](const LlmModel& mo) { return mo.config().n_layer; })
      .def_property_readonly("n_head", [](const LlmModel& mo) { return mo.config().n_head; })
      .def_property_readonly("n_head_kv", [](const LlmModel& mo) { return mo.config().n_head_kv; })
      .def_property_readonly("n_ff", [](const LlmModel& mo) { return mo.config().n_ff; })
      .def_property_readonly("n_ctx_train", [](const LlmModel& mo) { return mo.config().n_ctx_train; })
      .def_property_readonly("file_size", [](const LlmModel& mo) { return mo.file().file_size(); })
      .def_property_readonly("weight_bytes_per_token", [](const LlmModel& mo) { return mo.weight_bytes; })
      .def_property_readonly("repacked_bytes", [](const LlmModel& mo) { return mo.packed_bytes; });

  py::class_<ContextHandle>(m, "Context")
      .def(py::init([](std::shared_ptr<LlmModel> model, int64_t n_ctx, int64_t n_batch, int n_threads,
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

  py::class_<VisionModel, std::shared_ptr<VisionModel>>(m, "VisionModel")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release nogil;
             return std::make_shared<VisionModel>(path);
           }),
           py::arg("path"))
      .def_property_readonly("config", &vision_config_dict)
      .def("release_weights", &VisionModel::release_weights, "Free the weights (mapping and copies); they are read again on demand.")
      .def_property_readonly("weights_loaded", &VisionModel::weights_loaded)
      .def_property_readonly("n_loads", &VisionModel::n_loads)
      .def_property_readonly("n_patches_encoded", &VisionModel::n_patches_encoded)
      .def("encode", [](const VisionModel& vm, py::array pixels, int n_threads, int64_t batch_size) {
             return vision_encode(vm, pixels, true, n_threads, batch_size);
           },
           py::arg("pixels"), py::arg("n_threads") = 1, py::arg("batch_size") = 4)
      .def("encode_features", [](const VisionModel& vm, py::array pixels, int n_threads, int64_t batch_size) {
             return vision_encode(vm, pixels, false, n_threads, batch_size);
           },
           py::arg("pixels"), py::arg("n_threads") = 1, py::arg("batch_size") = 4);

  py::class_<SamplerParams> sp(m, "SamplingParams", R"doc(How the next token is chosen (the one definition: csrc/llm/sampler.h).

Keyword arguments, each also an attribute; unknown names and bad values raise InvalidArgumentError.

Example:
    >>> from bluelm_cpp import SamplingParams
    >>> SamplingParams(temperature=0, seed=1).temperature
    0.0
)doc");
  sp.def(py::init([](const py::kwargs& kw) { return params_from_kwargs(kw); }))
      .def("__repr__", &params_repr)
      .def("validate", [](const SamplerParams& p) { p.validate(); })
      .def("replace",
           [](const SamplerParams& p, const py::kwargs& kw) {
             SamplerParams q = p;
             py::dict merged;
             for_each_field(q, [&](const char* name, const auto& field, const char*) { merged[name] = get_field(field); });
             for (const auto& [k, v] : kw) merged[k] = v;
             return params_from_kwargs(py::kwargs(merged));
           },
           "A copy with some fields changed.")
      .def("to_dict",
           [](const SamplerParams& p) {
             py::dict d;
             for_each_field(p, [&](const char* name, const auto& field, const char*) { d[name] = get_field(field); });
             return d;
           })
      .def_static("fields", [] {
        py::list out;
        SamplerParams p;
        for_each_field(p, [&](const char* name, const auto& field, const char* help) {
          out.append(py::make_tuple(name, get_field(field), help));
        });
        return out;
      }, "(name, default, help) of every field, in order.");
  {
    SamplerParams proto;
    for_each_field(proto, [&](const char* name, const auto&, const char* help) {
      sp.def_property(
          name,
          [name](const SamplerParams& p) {
            py::object r;
            for_each_field(p, [&](const char* n, const auto& f, const char*) {
              if (std::strcmp(n, name) == 0) r = get_field(f);
            });
            return r;
          },
          [name](SamplerParams& p, const py::object& v) {
            SamplerParams q = p;
            for_each_field(q, [&](const char* n, auto& f, const char*) {
              if (std::strcmp(n, name) == 0) set_field(name, v, f);
            });
            q.validate();
            p = q;
          },
          help);
    });
  }

  py::class_<Sampler>(m, "Sampler")
      .def(py::init([](const py::object& params, const py::kwargs& kw) {
             if (!params.is_none() && kw.size()) throw ArgumentError("give a SamplingParams or keyword arguments, not both");
             return std::make_unique<Sampler>(params.is_none() ? params_from_kwargs(kw) : params.cast<SamplerParams>());
           }),
           py::arg("params") = py::none())
      .def("sample",
           [](Sampler& s, ContextHandle& pc) {
             BusyGuard g(pc.busy);
             if (pc.s->n_logit_rows() == 0) throw ArgumentError("no logits yet: call eval first");
             const int64_t nv = pc.s->context().model().config().n_vocab;
             const float* last = pc.s->logits() + (pc.s->n_logit_rows() - 1) * nv;
             return s.sample(last, nv);
           },
           py::arg("context"))
      .def("sample_logits",
           [](Sampler& s, py::array_t<float, py::array::c_style | py::array::forcecast> logits, const py::object& mask) {
             if (logits.ndim() != 1 || logits.shape(0) == 0) throw ArgumentError("logits must be a non-empty 1-D array");
             py::buffer_info keep;
             return s.sample(logits.data(), logits.shape(0), mask_of(mask, logits.shape(0), keep));
           },
           py::arg("logits"), py::arg("mask") = py::none())
      .def("accept", &Sampler::accept, py::arg("token"))
      .def("reset", &Sampler::reset);
}
