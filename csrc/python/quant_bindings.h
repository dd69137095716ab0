// Bindings of the block codecs (the converter's quantiser, dequantisation for
// tests and tools) and of the kernel choice per type (`bluelm-cpp info`).
// Included by module.cpp only.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "core/block_formats.h"
#include "core/errors.h"
#include "core/quantize.h"
#include "core/thread_pool.h"
#include "kernels/kernel_choice.h"
#include "kernels/kernels.h"

namespace bluelm::python {

namespace py = pybind11;

inline const TypeInfo& block_type(uint32_t type) {
  const TypeInfo* ti = type_info(type);
  if (!ti) throw ArgumentError("unknown tensor type " + std::to_string(type) + " (" + type_name(type) + ")");
  return *ti;
}

inline void bind_quants(py::module_& m) {
  m.def("can_quantize", [](uint32_t type) { return type_info(type) && can_quantize(static_cast<GgmlType>(type)); },
        py::arg("type"), "True when quantize() can produce this GGML type number.");

  m.def(
      "quantize",
      [](uint32_t type, py::array_t<float, py::array::c_style | py::array::forcecast> x, int n_threads) {
        const TypeInfo& ti = block_type(type);
        if (!can_quantize(static_cast<GgmlType>(type))) throw ArgumentError(std::string("cannot quantise to ") + ti.name);
        if (x.ndim() < 1 || x.ndim() > 2) throw ArgumentError("quantize needs a 1-D or 2-D float32 array");
        if (n_threads < 1 || n_threads > 256) throw ArgumentError("n_threads must be in [1, 256]");
        const int64_t cols = x.shape(x.ndim() - 1), rows = x.ndim() == 2 ? x.shape(0) : 1;
        if (cols == 0 || cols % ti.block_size != 0) {
          throw ArgumentError("a row of " + std::to_string(cols) + " values is not a whole number of " + ti.name +
                              " blocks of " + std::to_string(ti.block_size));
        }
        const size_t rb = row_bytes(static_cast<GgmlType>(type), cols);
        py::array_t<uint8_t> out = x.ndim() == 2 ? py::array_t<uint8_t>({rows, static_cast<int64_t>(rb)})
                                                 : py::array_t<uint8_t>(static_cast<py::ssize_t>(rb));
        const float* src = x.data();
        uint8_t* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          // Rows are independent: split them over the threads, bytes unchanged.
          ThreadPool pool(static_cast<int>(std::min<int64_t>(n_threads, std::max<int64_t>(rows, 1))));
          pool.parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
            quantize_rows(static_cast<GgmlType>(type), src + r0 * cols, dst + r0 * rb, r1 - r0, cols);
          });
        }
        return out;
      },
      py::arg("type"), py::arg("x"), py::arg("n_threads") = 1,
      "Quantise float32 rows into GGML blocks of `type` (uint8 rows), with the bytes\n"
      "llama.cpp's quantiser gives without an importance matrix. Example:\n"
      "    q = _core.quantize(12, np.ones((4, 256), np.float32))   # Q4_K: shape (4, 144)");

  m.def(
      "dequantize",
      [](uint32_t type, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> data) {
        const TypeInfo& ti = block_type(type);
        const size_t nbytes = static_cast<size_t>(data.size());
        if (nbytes % ti.block_bytes != 0) {
          throw ArgumentError(std::to_string(nbytes) + " bytes are not a whole number of " + ti.name + " blocks of " +
                              std::to_string(ti.block_bytes) + " bytes");
        }
        const int64_t n = static_cast<int64_t>(nbytes / ti.block_bytes) * ti.block_size;
        py::array_t<float> out(static_cast<py::ssize_t>(n));
        const uint8_t* src = data.data();
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          dequantize_row(static_cast<GgmlType>(type), src, dst, n);
        }
        return out;
      },
      py::arg("type"), py::arg("data"),
      "Dequantise GGML blocks (any shape of uint8) to a 1-D float32 array; equal bit for\n"
      "bit to gguf.quants.dequantize. Example: _core.dequantize(12, q).reshape(4, 256)");

  m.def(
      "kernel_info",
      [](uint32_t type, int64_t rows) {
        const kernels::KernelTable& t = kernels::active();
        const GgmlType g = static_cast<GgmlType>(type);
        py::dict d;
        d["isa"] = std::string(t.isa);
        d["kernel"] = std::string(kernels::kernel_kind_name(kernels::kernel_kind(t, g)));
        const int R = kernels::pack_rows_for(t, g, rows);
        d["pack_rows"] = R;
        const char* name = R ? t.packed_name[kernels::weight_slot(g)] : nullptr;
        d["layout"] = R == 0 ? std::string("file") : name ? std::string(name) : std::to_string(R) + "-row groups";
        return d;
      },
      py::arg("type"), py::arg("rows"),
      "How the active kernel table multiplies a matrix of this type and row count:\n"
      "{'isa': 'avx512', 'kernel': 'simd' | 'scalar fallback' | 'scalar' | 'none', 'pack_rows': R,\n"
      "'layout': 'file' | the packed kernel's name | 'R-row groups'} (R > 0: repacked at load in\n"
      "groups of R rows).");
}

}  // namespace bluelm::python
