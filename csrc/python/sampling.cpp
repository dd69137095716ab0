// The SamplingParams class, generated from for_each_field (llm/sampler.h), and Sampler.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "llm/sampler.h"
#include "python/bindings.h"

namespace bluelm::binding {
namespace {

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

void bind_sampling(py::module_& m) {
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

}  // namespace bluelm::binding
