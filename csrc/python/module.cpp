// The pybind11 module bluelm_cpp._core: bindings only, no logic of its own.
// This file: errors, GGUF files, the LLM's weights, the vision model; the
// session (context.cpp, draft.cpp) and sampling (sampling.cpp) have their own.
#include <cstring>
#include <memory>
#include <string>

#include "core/bandwidth_probe.h"
#include "core/gguf_file.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "llm/llm_weights.h"
#include "python/bindings.h"
#include "python/quant_bindings.h"
#include "vision/vision_model.h"

using namespace bluelm;
using namespace bluelm::binding;

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


// The bandwidth probes' shared argument checks and sweep call (GIL released).
void check_probe_threads(int n_threads) {
  if (n_threads < 1 || n_threads > 256) throw ArgumentError("n_threads must be in [1, 256]");
}

template <class Probe>
double probe_best_of(Probe& p, int passes) {
  if (passes < 1) throw ArgumentError("passes must be at least 1");
  py::gil_scoped_release nogil;
  return p.best_of(passes);
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
  python::bind_quants(m);
  m.def(
      "read_bandwidth",
      [](size_t bytes, int n_threads, int passes) {
        check_probe_threads(n_threads);
        py::gil_scoped_release nogil;
        return read_bandwidth(bytes, n_threads, passes);
      },
      py::arg("bytes") = size_t(512) << 20, py::arg("n_threads") = 1, py::arg("passes") = 5,
      "Best-of-passes memory read bandwidth in bytes/s (benchmark roofline).");
  py::class_<ReadProbe>(m, "ReadProbe",
                        "A read-bandwidth probe kept between sweeps (benchmarks probe between decode steps).")
      .def(py::init([](size_t bytes, int n_threads) {
             if (bytes < (size_t(1) << 20)) throw ArgumentError("bytes must be at least 1 MiB");
             check_probe_threads(n_threads);
             py::gil_scoped_release nogil;
             return std::make_unique<ReadProbe>(bytes, n_threads);
           }),
           py::arg("bytes") = size_t(256) << 20, py::arg("n_threads") = 1)
      .def("best_of", &probe_best_of<ReadProbe>, py::arg("passes") = 1,
           "Best of `passes` sweeps of the buffer, in bytes/s.");

  py::class_<SpanProbe>(m, "WeightsProbe",
                        "Reads a model's matrices as decode does (a job per product group, split over the "
                        "threads) with no arithmetic: a decode's bandwidth ceiling on those pages.")
      .def(py::init([](const LlmModel& mo, int n_threads) {
             check_probe_threads(n_threads);
             auto span = [](const Matrix& w) { return SpanProbe::Span{w.data, w.bytes()}; };
             std::vector<std::vector<SpanProbe::Span>> jobs;
             for (const LayerWeights& L : mo.layers) {  // decode's jobs, in its order
               jobs.push_back({span(L.wq), span(L.wk), span(L.wv)});
               jobs.push_back({span(L.wo)});
               jobs.push_back({span(L.w_gate), span(L.w_up)});
               jobs.push_back({span(L.w_down)});
             }
             jobs.push_back({span(mo.output)});
             py::gil_scoped_release nogil;
             return std::make_unique<SpanProbe>(std::move(jobs), n_threads);
           }),
           py::arg("model"), py::arg("n_threads") = 1, py::keep_alive<1, 2>())
      .def_property_readonly("bytes", &SpanProbe::bytes)
      .def("best_of", &probe_best_of<SpanProbe>, py::arg("passes") = 1,
           "Best of `passes` sweeps of the matrices, in bytes/s.");

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

  bind_context(m);
  bind_sampling(m);
}
