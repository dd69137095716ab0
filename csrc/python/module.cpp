// The pybind11 module bluelm_cpp._core: bindings only, no logic of its own.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
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

// One Python-visible context; the mutex refuses concurrent use from two threads.
struct ContextHandle {
  std::unique_ptr<Context> ctx;
  std::mutex busy;
  std::atomic<bool> cancel{false};  // set from any thread, polled by the prefill scheduler
};

class BusyGuard {
 public:
  explicit BusyGuard(std::mutex& m) : lock_(m, std::try_to_lock) {
    if (!lock_.owns_lock()) throw ArgumentError("this context is already in use by another thread; use one Model per thread or serialise calls");
  }
 private:
  std::unique_lock<std::mutex> lock_;
};

std::vector<int32_t> to_tokens(const std::vector<int64_t>& in, int64_t n_vocab) {
  std::vector<int32_t> out(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] < 0 || in[i] >= n_vocab) {
      throw ArgumentError("token id " + std::to_string(in[i]) + " at index " + std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
    }
    out[i] = static_cast<int32_t>(in[i]);
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


// ("tokens", [ids]) | ("embeddings", float32 [n, n_embd]) | ("patches", float32 [n, 3, S, S][, out]),
// where the optional out, float32 [n * n_out_tokens, n_embd], receives the image's embeddings.
std::vector<PrefillSegment> parse_segments(const py::list& items, const Context& ctx, const VisionModel* vision,
                                           std::vector<py::array_t<float, py::array::c_style>>& keep) {
  std::vector<PrefillSegment> segs;
  const int64_t d = ctx.model().config().n_embd;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string where = "segment " + std::to_string(i);
    if (!py::isinstance<py::tuple>(items[i]) || py::len(items[i]) < 2 || py::len(items[i]) > 3) throw ArgumentError(where + " must be a (kind, data) tuple");
    const py::tuple t = items[i].cast<py::tuple>();
    const std::string kind = py::str(t[0]);
    PrefillSegment s;
    if (kind == "tokens") {
      s.kind = PrefillSegment::Kind::Tokens;
      for (const auto& v : t[1]) {
        const int64_t id = v.cast<int64_t>();
        if (id < INT32_MIN || id > INT32_MAX) throw ArgumentError(where + ": token id " + std::to_string(id) + " is out of range");
        s.tokens.push_back(static_cast<int32_t>(id));
      }
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
      if (t.size() == 3 && !t[2].is_none()) {
        if (!patches) throw ArgumentError(where + ": only a patches segment takes an output array");
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
  return d;
}

// Runs the scheduler on its own thread while this one, every few ms, takes the
// GIL to let Python handle signals: a KeyboardInterrupt cancels the prefill
// (the context is rolled back) and is raised once the scheduler has stopped.
py::dict context_prefill(ContextHandle& pc, const py::list& items, std::shared_ptr<VisionModel> vision, bool overlap,
                         int n_threads_vision, int64_t vision_batch, int64_t first_batch, bool release_vision) {
  BusyGuard g(pc.busy);
  std::vector<py::array_t<float, py::array::c_style>> keep;
  const std::vector<PrefillSegment> segs = parse_segments(items, *pc.ctx, vision.get(), keep);
  PrefillOptions opt;
  opt.overlap = overlap;
  opt.n_threads_vision = n_threads_vision;
  opt.vision_batch = vision_batch;
  opt.first_batch = first_batch;
  opt.release_vision = release_vision;
  pc.cancel = false;
  PrefillStats st;
  std::exception_ptr err;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::unique_ptr<py::error_already_set> interrupt;
  std::thread runner([&] {
    try {
      st = prefill_segments(*pc.ctx, vision.get(), segs, opt, pc.cancel);
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
      pc.cancel = true;
    }
  }
  runner.join();
  if (interrupt) throw py::error_already_set(*interrupt);
  if (err) std::rethrow_exception(err);
  return stats_dict(st);
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
             pc->ctx = std::make_unique<Context>(model, n_ctx, n_batch, n_threads, parse_kv_type(kv_type));
             return pc;
           }),
           py::arg("model"), py::arg("n_ctx"), py::arg("n_batch") = 128, py::arg("n_threads") = 1,
           py::arg("kv_type") = "f16")
      .def(
          "eval",
          [](ContextHandle& pc, const std::vector<int64_t>& tokens, bool logits_all) {
            BusyGuard g(pc.busy);
            const std::vector<int32_t> t = to_tokens(tokens, pc.ctx->model().config().n_vocab);
            py::gil_scoped_release nogil;
            pc.ctx->eval(t.data(), static_cast<int64_t>(t.size()), logits_all);
          },
          py::arg("tokens"), py::arg("logits_all") = false)
      .def(
          "eval_embeddings",
          [](ContextHandle& pc, py::array emb, bool logits_all) {
            BusyGuard g(pc.busy);
            const int64_t d = pc.ctx->model().config().n_embd;
            if (!py::isinstance<py::array_t<float>>(emb)) throw ArgumentError("embeddings must be float32, got " + std::string(py::str(emb.dtype())));
            if (emb.ndim() != 2 || emb.shape(1) != d) {
              throw ArgumentError("embeddings must have shape [n, " + std::to_string(d) + "], got " + std::string(py::str(py::tuple(py::cast(std::vector<py::ssize_t>(emb.shape(), emb.shape() + emb.ndim()))))));
            }
            auto a = py::array_t<float, py::array::c_style>::ensure(emb);
            const float* data = a.data();
            const int64_t n = a.shape(0);
            py::gil_scoped_release nogil;
            pc.ctx->eval_embeddings(data, n, logits_all);
          },
          py::arg("emb"), py::arg("logits_all") = false)
      .def("logits",
           [](ContextHandle& pc) {
             BusyGuard g(pc.busy);
             const int64_t rows = pc.ctx->n_logit_rows(), nv = pc.ctx->model().config().n_vocab;
             if (rows == 0) throw ArgumentError("no logits yet: call eval first");
             py::array_t<float> out = rows == 1 ? py::array_t<float>(nv) : py::array_t<float>({rows, nv});
             std::memcpy(out.mutable_data(), pc.ctx->logits(), sizeof(float) * rows * nv);
             return out;
           })
      .def_property_readonly("n_past", [](ContextHandle& pc) { return pc.ctx->n_past(); })
      .def_property_readonly("n_ctx", [](ContextHandle& pc) { return pc.ctx->n_ctx(); })
      .def_property_readonly("n_batch", [](ContextHandle& pc) { return pc.ctx->n_batch(); })
      .def_property_readonly("n_threads", [](ContextHandle& pc) { return pc.ctx->n_threads(); })
      .def("truncate", [](ContextHandle& pc, int64_t n) { BusyGuard g(pc.busy); pc.ctx->truncate(n); }, py::arg("n"))
      .def("prefill", &context_prefill, py::arg("segments"), py::arg("vision") = py::none(), py::arg("overlap") = true,
           py::arg("n_threads_vision") = 1, py::arg("vision_batch") = 4, py::arg("first_batch") = 1,
           py::arg("release_vision") = false,
           "Prefill (kind, data) segments, encoding patches on their own threads while the LLM runs; returns stage times.")
      .def("cancel", [](ContextHandle& pc) { pc.cancel = true; }, "Stop the prefill in flight (thread-safe); it rolls back and raises CancelledError.")
      .def("reset", [](ContextHandle& pc) { BusyGuard g(pc.busy); pc.ctx->truncate(0); });

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

  py::class_<Sampler>(m, "Sampler")
      .def(py::init([](float temperature, int32_t top_k, float top_p, float min_p, float repeat_penalty,
                       float presence_penalty, float frequency_penalty, int32_t repeat_last_n, uint64_t seed) {
             SamplerParams p;
             p.temperature = temperature;
             p.top_k = top_k;
             p.top_p = top_p;
             p.min_p = min_p;
             p.repeat_penalty = repeat_penalty;
             p.presence_penalty = presence_penalty;
             p.frequency_penalty = frequency_penalty;
             p.repeat_last_n = repeat_last_n;
             p.seed = seed;
             return std::make_unique<Sampler>(p);
           }),
           py::arg("temperature") = 0.8f, py::arg("top_k") = 40, py::arg("top_p") = 0.95f, py::arg("min_p") = 0.05f,
           py::arg("repeat_penalty") = 1.0f, py::arg("presence_penalty") = 0.0f, py::arg("frequency_penalty") = 0.0f,
           py::arg("repeat_last_n") = 64, py::arg("seed") = 0)
      .def("sample",
           [](Sampler& s, ContextHandle& pc) {
             BusyGuard g(pc.busy);
             if (pc.ctx->n_logit_rows() == 0) throw ArgumentError("no logits yet: call eval first");
             const int64_t nv = pc.ctx->model().config().n_vocab;
             const float* last = pc.ctx->logits() + (pc.ctx->n_logit_rows() - 1) * nv;
             return s.sample(last, nv);
           },
           py::arg("context"))
      .def("sample_logits",
           [](Sampler& s, py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
             if (logits.ndim() != 1 || logits.shape(0) == 0) throw ArgumentError("logits must be a non-empty 1-D array");
             return s.sample(logits.data(), logits.shape(0));
           },
           py::arg("logits"))
      .def("accept", &Sampler::accept, py::arg("token"))
      .def("reset", &Sampler::reset);
}
