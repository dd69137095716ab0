// The pybind11 module bluelm_cpp._core: bindings only, no logic of its own.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>

#include "core/bandwidth_probe.h"
#include "core/errors.h"
#include "core/gguf_file.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "llm/decoder.h"
#include "llm/sampler.h"

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
      .def("logits",
           [](ContextHandle& pc) {
             BusyGuard g(pc.busy);
             const int64_t rows = pc.ctx->n_logit_rows(), nv = pc.ctx->model().config().n_vocab;
             if (rows == 0) throw ArgumentError("no logits yet: call eval first");
             py::array_t<float> out = rows == 1 ? py::array_t<float>({nv}) : py::array_t<float>({rows, nv});
             std::memcpy(out.mutable_data(), pc.ctx->logits(), sizeof(float) * rows * nv);
             return out;
           })
      .def_property_readonly("n_past", [](ContextHandle& pc) { return pc.ctx->n_past(); })
      .def_property_readonly("n_ctx", [](ContextHandle& pc) { return pc.ctx->n_ctx(); })
      .def_property_readonly("n_batch", [](ContextHandle& pc) { return pc.ctx->n_batch(); })
      .def_property_readonly("n_threads", [](ContextHandle& pc) { return pc.ctx->n_threads(); })
      .def("truncate", [](ContextHandle& pc, int64_t n) { BusyGuard g(pc.busy); pc.ctx->truncate(n); }, py::arg("n"))
      .def("reset", [](ContextHandle& pc) { BusyGuard g(pc.busy); pc.ctx->truncate(0); });

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
