// What the running CPU (and its OS) can execute, for picking a kernel table.
#pragma once
#include <string>

namespace bluelm::kernels {

struct CpuFeatures {
  // x86-64: each flag also requires the OS to save the register state it needs.
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  // aarch64
  bool asimd = false, fphp = false, dotprod = false, i8mm = false;
};

// Detected once; cheap to call.
const CpuFeatures& cpu_features();
// "avx2 fma f16c ..." for messages.
std::string cpu_features_string();

}  // namespace bluelm::kernels
