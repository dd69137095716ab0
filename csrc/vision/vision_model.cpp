#include "vision/vision_model.h"

#include "core/errors.h"
#include "vision/vision_encoder.h"

namespace bluelm {

VisionModel::VisionModel(const std::string& path) : path_(path) {
  auto l = std::make_shared<LoadedVision>();
  l->file = std::make_unique<GGUFFile>(path);
  config_ = VisionConfig::from_gguf(*l->file);
  l->weights = std::make_unique<VisionWeights>(*l->file, config_);
  main_type_ = l->weights->main_type;
  file_size_ = l->file->file_size();
  loaded_ = std::move(l);
  n_loads_ = 1;
}

std::shared_ptr<const LoadedVision> VisionModel::load() const {
  auto l = std::make_shared<LoadedVision>();
  l->file = std::make_unique<GGUFFile>(path_);
  const VisionConfig c = VisionConfig::from_gguf(*l->file);
  // The encoder's buffers and the caller's arrays were sized from the first load.
  if (l->file->file_size() != file_size_ || c.image_size != config_.image_size || c.n_embd != config_.n_embd ||
      c.n_layer != config_.n_layer || c.n_ff != config_.n_ff || c.proj_dim != config_.proj_dim ||
      c.n_out_tokens != config_.n_out_tokens || c.projector != config_.projector) {
    throw FormatError(path_ + ": the vision model file changed on disk since it was loaded");
  }
  l->weights = std::make_unique<VisionWeights>(*l->file, config_);
  if (l->weights->main_type != main_type_) throw FormatError(path_ + ": the vision model file changed on disk since it was loaded");
  n_loads_.fetch_add(1);
  return l;
}

std::shared_ptr<const LoadedVision> VisionModel::acquire() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!loaded_) loaded_ = load();
  return loaded_;
}

void VisionModel::release_weights() const {
  std::shared_ptr<const LoadedVision> old;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    old.swap(loaded_);
  }
  // `old` unmaps here unless an encode still holds it.
}

bool VisionModel::weights_loaded() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return loaded_ != nullptr;
}

void VisionModel::encode(const float* pixels, int64_t n_images, bool project, int n_threads,
                         int64_t batch_size, float* out) const {
  if (n_images <= 0) throw ArgumentError("encode needs at least one image");
  if (n_threads <= 0 || n_threads > 256) throw ArgumentError("n_threads must be between 1 and 256, got " + std::to_string(n_threads));
  if (batch_size <= 0 || batch_size > 256) throw ArgumentError("batch_size must be between 1 and 256, got " + std::to_string(batch_size));
  const std::shared_ptr<const LoadedVision> l = acquire();
  const int64_t nb = std::min(batch_size, n_images);
  VisionEncoder enc(config_, *l->weights, nb, n_threads);
  const int64_t S = config_.image_size;
  const int64_t per_in = 3 * S * S;
  const int64_t per_out = project ? config_.n_out_tokens * config_.proj_dim : config_.n_tokens * config_.n_embd;
  for (int64_t i = 0; i < n_images; i += nb) {
    const int64_t m = std::min(nb, n_images - i);
    enc.run(pixels + i * per_in, m, project, out + i * per_out);
    count_encoded(m);
  }
}

}  // namespace bluelm
