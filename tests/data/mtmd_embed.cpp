// llama.cpp's own vision encoder (libmtmd's clip) on given pixels, for the
// recordings of tests/data/record_mtmd_vision.py, which builds this against
// the llama-cpp-python sdist's llama.cpp and runs it. Not part of the package.
//
//   mtmd_embed MMPROJ PIXELS N S OUT [N_THREADS]
//
// PIXELS: N x 3 x S x S float32, already normalised (the encoder's input, as
// our VisionModel.encode takes it). OUT: N x T x D float32, the projector's
// output per patch. Prints "tokens T dim D". Exit status 2 when llama.cpp
// refuses the file (clip_init fails), 1 on other errors.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "clip-impl.h"
#include "clip.h"

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s MMPROJ PIXELS N S OUT [N_THREADS]\n", argv[0]);
    return 1;
  }
  const int n = std::atoi(argv[3]), s = std::atoi(argv[4]);
  const int n_threads = argc > 6 ? std::atoi(argv[6]) : 1;
  if (n <= 0 || s <= 0 || n_threads <= 0) return 1;

  std::vector<float> pixels(static_cast<size_t>(n) * 3 * s * s);
  FILE* in = std::fopen(argv[2], "rb");
  if (!in || std::fread(pixels.data(), sizeof(float), pixels.size(), in) != pixels.size()) {
    std::fprintf(stderr, "cannot read %zu floats from %s\n", pixels.size(), argv[2]);
    return 1;
  }
  std::fclose(in);

  clip_context_params params{};
  params.use_gpu = false;
  params.flash_attn_type = CLIP_FLASH_ATTN_TYPE_AUTO;  // mtmd's default
  params.image_min_tokens = -1;
  params.image_max_tokens = -1;
  params.warmup = false;
  clip_init_result res = clip_init(argv[1], params);
  if (!res.ctx_v) {
    std::fprintf(stderr, "llama.cpp refused %s\n", argv[1]);
    return 2;
  }

  FILE* out = std::fopen(argv[5], "wb");
  if (!out) return 1;
  int n_tokens = 0, n_dim = clip_n_mmproj_embd(res.ctx_v);
  for (int i = 0; i < n; ++i) {
    // clip_image_f32 holds interleaved RGB rows (HWC); PIXELS is CHW.
    clip_image_f32 img;
    img.set_size({s, s}, false, false);
    std::vector<float> hwc(static_cast<size_t>(3) * s * s);
    const float* chw = pixels.data() + static_cast<size_t>(i) * 3 * s * s;
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < s * s; ++p) hwc[static_cast<size_t>(p) * 3 + c] = chw[static_cast<size_t>(c) * s * s + p];
    }
    img.cpy_buf(hwc);
    n_tokens = clip_n_output_tokens(res.ctx_v, &img);
    std::vector<float> emb(static_cast<size_t>(n_tokens) * n_dim);
    if (!clip_image_encode(res.ctx_v, n_threads, &img, emb)) {
      std::fprintf(stderr, "clip_image_encode failed on patch %d\n", i);
      return 1;
    }
    std::fwrite(emb.data(), sizeof(float), emb.size(), out);
  }
  std::fclose(out);
  clip_free(res.ctx_v);
  std::printf("tokens %d dim %d\n", n_tokens, n_dim);
  return 0;
}
