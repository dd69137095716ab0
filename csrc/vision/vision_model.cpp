#include "vision/vision_model.h"

#include "core/errors.h"
#include "vision/vision_encoder.h"

namespace bluelm {

VisionModel::VisionModel(const std::string& path)
    : file_(std::make_unique<GGUFFile>(path)), config_(VisionConfig::from_gguf(*file_)) {
  weights_ = std::make_unique<VisionWeights>(*file_, config_);
}

void VisionModel::encode(const float* pixels, int64_t n_images, bool project, int n_threads,
                         int64_t batch_size, float* out) const {
  if (n_images <= 0) throw ArgumentError("encode needs at least one image");
  if (n_threads <= 0 || n_threads > 256) throw ArgumentError("n_threads must be between 1 and 256, got " + std::to_string(n_threads));
  if (batch_size <= 0 || batch_size > 256) throw ArgumentError("batch_size must be between 1 and 256, got " + std::to_string(batch_size));
  const int64_t nb = std::min(batch_size, n_images);
  VisionEncoder enc(config_, *weights_, nb, n_threads);
  const int64_t S = config_.image_size;
  const int64_t per_in = 3 * S * S;
  const int64_t per_out = project ? config_.n_out_tokens * config_.proj_dim : config_.n_tokens * config_.n_embd;
  for (int64_t i = 0; i < n_images; i += nb) {
    const int64_t m = std::min(nb, n_images - i);
    enc.run(pixels + i * per_in, m, project, out + i * per_out);
  }
}

}  // namespace bluelm
