#include "vision/vision_config.h"

namespace bluelm {

VisionConfig VisionConfig::from_gguf(const GGUFFile& f) {
  if (!f.find_tensor("v.patch_embd.weight")) {
    f.fail("has no vision encoder (tensor 'v.patch_embd.weight' is missing); pass the mmproj file");
  }
  VisionConfig c;
  const std::string p = "clip.vision.";
  c.image_size = f.require_int(p + "image_size");
  c.patch_size = f.require_int(p + "patch_size");
  c.n_embd = f.require_int(p + "embedding_length");
  c.n_ff = f.require_int(p + "feed_forward_length");
  c.n_layer = f.require_int(p + "block_count");
  c.n_head = f.require_int(p + "attention.head_count");
  c.eps = static_cast<float>(f.get_float(p + "attention.layer_norm_epsilon", 1e-6));

  auto in_range = [&](const std::string& key, int64_t v, int64_t max) {
    if (v <= 0 || v > max) f.fail("metadata key '" + key + "' = " + std::to_string(v) + " is out of range");
  };
  in_range(p + "image_size", c.image_size, 8192);
  in_range(p + "patch_size", c.patch_size, 256);
  in_range(p + "embedding_length", c.n_embd, 1 << 16);
  in_range(p + "feed_forward_length", c.n_ff, 1 << 18);
  in_range(p + "block_count", c.n_layer, 1024);
  in_range(p + "attention.head_count", c.n_head, 1024);
  // A stride-P conv drops the remainder (384 = 27 * 14 + 6 for so400m).
  if (c.image_size < c.patch_size) f.fail("clip.vision.image_size is smaller than clip.vision.patch_size");
  if (c.n_embd % c.n_head != 0) f.fail("clip.vision.embedding_length must be a multiple of attention.head_count");
  if (!(c.eps > 0.0f && c.eps < 1.0f)) f.fail("clip.vision.attention.layer_norm_epsilon is out of range");
  c.grid = c.image_size / c.patch_size;
  c.n_tokens = c.grid * c.grid;
  if (c.n_tokens > 65536) f.fail("too many vision tokens per image");
  c.head_dim = c.n_embd / c.n_head;

  c.projector_name = f.get_string("clip.vision.projector_type", f.get_string("clip.projector_type", ""));
  // A bare encoder ("none") outputs its features: projection_dim = C.
  c.proj_dim = c.projector_name == "none" ? f.get_int(p + "projection_dim", c.n_embd) : f.require_int(p + "projection_dim");
  in_range(p + "projection_dim", c.proj_dim, 1 << 18);
  if (c.projector_name == "none") {
    if (c.proj_dim != c.n_embd) f.fail("projector type 'none' needs clip.vision.projection_dim = embedding_length");
    c.projector = ProjectorType::None;
  } else if (c.projector_name == "mlp") {
    c.projector = ProjectorType::Mlp;
    c.downsample = 1;
  } else if (c.projector_name == "mlp_downsample") {
    c.projector = ProjectorType::MlpDownsample;
    c.downsample = f.get_int("bluelm.vision.downsample", 2);
    if (c.downsample != 2) f.fail("bluelm.vision.downsample = " + std::to_string(c.downsample) + " is not supported (only 2)");
    c.projector_eps = static_cast<float>(f.get_float("bluelm.vision.projector_ln_eps", 1e-5));
    if (!(c.projector_eps > 0.0f && c.projector_eps < 1.0f)) f.fail("bluelm.vision.projector_ln_eps is out of range");
  } else {
    f.fail("projector type '" + c.projector_name + "' is not supported (supported: none, mlp, mlp_downsample)");
  }
  c.out_grid = (c.grid + c.downsample - 1) / c.downsample;
  c.n_out_tokens = c.out_grid * c.out_grid;
  return c;
}

}  // namespace bluelm
