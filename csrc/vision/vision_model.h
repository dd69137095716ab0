// A SigLIP vision tower and its projector read from a GGUF (an mmproj file or
// a combined one), per docs/vision_format.md. Images go through in batches of
// patches; scratch memory is sized by the batch, never by the image count.
#pragma once
#include <memory>
#include <string>

#include "core/gguf_file.h"
#include "vision/vision_config.h"
#include "vision/vision_weights.h"

namespace bluelm {

class VisionModel {
 public:
  // Throws FileError / FormatError naming the file and the field at fault.
  explicit VisionModel(const std::string& path);

  const GGUFFile& file() const { return *file_; }
  const VisionConfig& config() const { return config_; }
  const VisionWeights& weights() const { return *weights_; }

  // pixels: n_images x 3 x S x S floats, already normalised. Writes
  // n_images x n_tokens x C encoder features (project = false) or
  // n_images x n_out_tokens x D projector outputs (project = true) to out.
  // Each image's result does not depend on the batch it was computed in.
  void encode(const float* pixels, int64_t n_images, bool project, int n_threads, int64_t batch_size,
              float* out) const;

 private:
  std::unique_ptr<GGUFFile> file_;
  VisionConfig config_;
  std::unique_ptr<VisionWeights> weights_;
};

}  // namespace bluelm
