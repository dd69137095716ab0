// What the files of the pybind11 module share: the Python-visible session
// (Context) and its guard, token and mask conversion, and each file's entry.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/errors.h"
#include "runtime/session.h"

namespace bluelm::binding {

namespace py = pybind11;

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
std::vector<int32_t> to_token_ids(const py::handle& seq, const std::string& where);

// A bitmask of allowed tokens (llguidance's layout), checked for size; nullptr for None.
TokenMask mask_of(const py::object& mask, int64_t n_vocab, py::buffer_info& keep);

// Each file's part of the module.
void bind_context(py::module_& m);      // context.cpp: Context (prefill, decode)
void bind_draft(py::class_<ContextHandle>& c);  // draft.cpp: Context's speculative decoding
void bind_sampling(py::module_& m);     // sampling.cpp: SamplingParams, Sampler

}  // namespace bluelm::binding
