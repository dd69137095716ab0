// A SigLIP vision tower and its projector read from a GGUF (an mmproj file or
// a combined one), per docs/vision_format.md. Images go through in batches of
// patches; scratch memory is sized by the batch, never by the image count.
// The weights can be released (mapping and re-quantised copies freed) and are
// read again on demand, so an app can keep the peak low between images.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "core/gguf_file.h"
#include "vision/vision_config.h"
#include "vision/vision_weights.h"

namespace bluelm {

// The mapping and the weights bound to it; shared so that an encode in flight
// keeps them alive across release_weights().
struct LoadedVision {
  std::unique_ptr<GGUFFile> file;
  std::unique_ptr<VisionWeights> weights;
};

class VisionModel {
 public:
  // Throws FileError / FormatError naming the file and the field at fault.
  explicit VisionModel(const std::string& path);

  // The loaded weights, read again from the file if they were released.
  // Throws FileError / FormatError when the file is gone or has changed.
  std::shared_ptr<const LoadedVision> acquire() const;
  // Drops this model's hold on the weights; they are freed once no encode uses
  // them. Const like acquire(): the weights are a cache of the file.
  void release_weights() const;
  bool weights_loaded() const;
  int64_t n_loads() const { return n_loads_.load(); }
  // Patches run through the encoder since construction (a cache-hit probe).
  int64_t n_patches_encoded() const { return n_patches_encoded_.load(); }
  void count_encoded(int64_t n) const { n_patches_encoded_.fetch_add(n); }

  const std::string& path() const { return path_; }
  const VisionConfig& config() const { return config_; }
  GgmlType main_type() const { return main_type_; }

  // pixels: n_images x 3 x S x S floats, already normalised. Writes
  // n_images x n_tokens x C encoder features (project = false) or
  // n_images x n_out_tokens x D projector outputs (project = true) to out.
  // Each image's result does not depend on the batch it was computed in.
  void encode(const float* pixels, int64_t n_images, bool project, int n_threads, int64_t batch_size,
              float* out) const;

 private:
  std::shared_ptr<const LoadedVision> load() const;

  std::string path_;
  VisionConfig config_;
  GgmlType main_type_ = GgmlType::F32;
  uint64_t file_size_ = 0;
  mutable std::mutex mutex_;
  mutable std::shared_ptr<const LoadedVision> loaded_;
  mutable std::atomic<int64_t> n_loads_{0};
  mutable std::atomic<int64_t> n_patches_encoded_{0};
};

}  // namespace bluelm
