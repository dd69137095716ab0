// e^x for the vision encoder's softmax and GELU on vectors of any ISA and
// width: x clamped to [-87, 88], 2^n * p(r) with n = round(x / ln 2),
// r = x - n ln 2 (ln 2 split in two), p the degree-6 Taylor polynomial
// (relative error about 2e-7). V, the ISA's traits, supplies the vector type F
// and set1, min, max, mul, fmadd(a, b, c) = a*b + c, fnmadd(a, b, c) = c - a*b
// (both fused), round (to nearest) and scale2n(p, n) = p * 2^n. Internal linkage.
#pragma once

namespace bluelm::kernels {
namespace {

template <class V>
inline typename V::F taylor_exp(typename V::F x) {
  using F = typename V::F;
  x = V::min(V::max(x, V::set1(-87.0f)), V::set1(88.0f));
  const F n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  F r = V::fnmadd(n, V::set1(0.693359375f), x);  // ln2 split hi/lo
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  F p = V::set1(1.0f / 720.0f);
  p = V::fmadd(p, r, V::set1(1.0f / 120.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 24.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 6.0f));
  p = V::fmadd(p, r, V::set1(0.5f));
  p = V::fmadd(p, r, V::set1(1.0f));
  p = V::fmadd(p, r, V::set1(1.0f));
  return V::scale2n(p, n);
}

}  // namespace
}  // namespace bluelm::kernels
