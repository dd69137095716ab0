// CPU feature detection: cpuid + xgetbv on x86-64, hwcaps on aarch64.
// Compiled with baseline flags so it is safe to run on any CPU of the target.
#include "kernels/cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <cpuid.h>
#include <cstdint>
#define BLUELM_X86 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define BLUELM_ARM_LINUX 1
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#define BLUELM_ARM_APPLE 1
#endif

namespace bluelm::kernels {
namespace {

#ifdef BLUELM_X86
// xgetbv through inline asm so this file needs no -mxsave.
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}
#endif

#ifdef BLUELM_ARM_APPLE
bool sysctl_flag(const char* name) {
  int v = 0;
  size_t n = sizeof(v);
  return sysctlbyname(name, &v, &n, nullptr, 0) == 0 && v != 0;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef BLUELM_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  const bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // + opmask, ZMM0-15 high, ZMM16-31
  if (!os_ymm) return f;
  f.fma = fma;
  f.f16c = f16c;
  unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
  if (__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7)) {
    f.avx2 = (b7 >> 5) & 1;
    if (os_zmm) {
      f.avx512f = (b7 >> 16) & 1;
      f.avx512bw = (b7 >> 30) & 1;
      f.avx512vl = (b7 >> 31) & 1;
      f.avx512vnni = (c7 >> 11) & 1;
      unsigned a71 = 0, b71 = 0, c71 = 0, d71 = 0;
      if (a7 >= 1 && __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71)) f.avx512bf16 = (a71 >> 5) & 1;
    }
  }
#elif defined(BLUELM_ARM_LINUX)
  // Bit numbers of the Linux arm64 hwcaps ABI (asm/hwcap.h).
  const unsigned long hw = getauxval(AT_HWCAP);
  const unsigned long hw2 = getauxval(AT_HWCAP2);
  f.asimd = (hw >> 1) & 1;
  f.fphp = (hw >> 9) & 1;
  f.dotprod = (hw >> 20) & 1;
  f.i8mm = (hw2 >> 13) & 1;
#elif defined(BLUELM_ARM_APPLE)
  f.asimd = true;
  f.fphp = sysctl_flag("hw.optional.arm.FEAT_FP16");
  f.dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
  f.i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM");
#elif defined(__aarch64__)
  f.asimd = true;  // ASIMD is mandatory on AArch64
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::string cpu_features_string() {
  const CpuFeatures& f = cpu_features();
  const struct {
    bool on;
    const char* name;
  } all[] = {{f.avx2, "avx2"},         {f.fma, "fma"},           {f.f16c, "f16c"},
             {f.avx512f, "avx512f"},   {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"},
             {f.avx512vnni, "avx512vnni"}, {f.avx512bf16, "avx512bf16"}, {f.asimd, "asimd"}, {f.fphp, "fphp"},
             {f.dotprod, "asimddp"},   {f.i8mm, "i8mm"}};
  std::string s;
  for (const auto& e : all) {
    if (!e.on) continue;
    if (!s.empty()) s += ' ';
    s += e.name;
  }
  return s.empty() ? "none" : s;
}

}  // namespace bluelm::kernels
