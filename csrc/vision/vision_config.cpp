#include "vision/vision_config.h"

namespace bluelm {

namespace {

const char* const kFeatureLayer = "clip.vision.feature_layer";

bool is_integer_type(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16: case GGUFValueType::INT16:
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::UINT64: case GGUFValueType::INT64:
      return true;
    default:
      return false;
  }
}

bool has_own_keys(const GGUFFile& f) {
  for (const auto& k : f.keys()) {
    if (k.rfind("bluelm.vision.", 0) == 0) return true;
  }
  return false;
}

// Layers run, as llama.cpp's LLaVA graph counts them: up to the feature layer
// when the file names one; otherwise block_count - 1 for an 'mlp' file of
// another writer (what that graph runs), and all block_count layers in this
// project's files (its contract before it wrote the key) and for the
// projectors llama.cpp does not know.
void resolve_layers(const GGUFFile& f, VisionConfig& c) {
  if (f.has(kFeatureLayer)) {
    const GGUFValue& a = f.require_array(kFeatureLayer);
    const std::string key = std::string("metadata key '") + kFeatureLayer + "'";
    if (!is_integer_type(a.elem_type)) f.fail(key + " must be an array of integers");
    if (a.count != 1) {
      f.fail(key + " has " + std::to_string(a.count) +
             " entries; only one feature layer is supported (stacked feature layers are not)");
    }
    const int64_t layer = a.array_int(0);
    if (layer < 1 || layer > c.n_block) {
      f.fail(key + " = [" + std::to_string(layer) + "] is out of range (1.." + std::to_string(c.n_block) +
             ", clip.vision.block_count)");
    }
    c.n_layer = layer;
  } else if (c.projector == ProjectorType::Mlp && !has_own_keys(f)) {
    if (c.n_block < 2) f.fail("an 'mlp' file without clip.vision.feature_layer runs block_count - 1 layers; block_count = 1 leaves none");
    c.n_layer = c.n_block - 1;
  } else {
    c.n_layer = c.n_block;
  }
}

// D is the rows of the last projector matrix, as llama.cpp takes it; the
// legacy converter writes projection_dim = 0 for a SigLIP tower.
void resolve_projection(const GGUFFile& f, VisionConfig& c) {
  const std::string key = "clip.vision.projection_dim";
  if (c.projector == ProjectorType::None) {
    c.proj_dim = f.get_int(key, c.n_embd);
    if (c.proj_dim != c.n_embd) f.fail("projector type 'none' needs clip.vision.projection_dim = embedding_length");
    return;
  }
  const GGUFTensor* t = f.find_tensor("mm.2.weight");
  if (!t) f.fail("required tensor 'mm.2.weight' is missing");
  if (t->n_dims != 2 || t->ne[1] <= 0 || t->ne[1] > (1 << 18)) {
    f.fail("tensor 'mm.2.weight' has shape " + t->shape_string() + ", expected [D, D] with 0 < D <= 262144");
  }
  const int64_t stated = f.get_int(key, 0);
  if (stated != 0 && stated != t->ne[1]) {
    f.fail("metadata key '" + key + "' = " + std::to_string(stated) + " disagrees with tensor 'mm.2.weight' (" +
           std::to_string(t->ne[1]) + " outputs)");
  }
  c.proj_dim = t->ne[1];
}

void resolve_names(const GGUFFile& f, VisionConfig& c) {
  for (const char* name : {"v.class_embd", "v.pre_ln.weight"}) {
    if (f.find_tensor(name)) {
      f.fail(std::string("has tensor '") + name + "' of a CLIP vision tower; only SigLIP towers are supported");
    }
  }
  if (c.projector == ProjectorType::Mlp && f.find_tensor("mm.3.weight")) {
    f.fail("has tensor 'mm.3.weight' of LLaVA's 'mlp_norm' projector (Yi-VL), which is not supported");
  }
  // By shape, as llama.cpp decides (possible only when C != F): fc1 maps C to
  // F, so its ggml row length ne[0] is C. Either tensor of layer 0 tells, so a
  // missing one is then reported under the name the file should have.
  auto shaped = [&](const char* name, int64_t ne0, int64_t ne1) {
    const GGUFTensor* t = f.find_tensor(name);
    return t && t->n_dims == 2 && t->ne[0] == ne0 && t->ne[1] == ne1;
  };
  if (c.n_embd != c.n_ff && (shaped("v.blk.0.ffn_down.weight", c.n_embd, c.n_ff) ||
                             shaped("v.blk.0.ffn_up.weight", c.n_ff, c.n_embd))) {
    c.ffn_naming = FfnNaming::LegacySwapped;
  }
  const bool current = f.find_tensor("v.image_newline") != nullptr;
  const bool legacy = f.find_tensor("model.image_newline") != nullptr;
  if (current && legacy) f.fail("has both 'v.image_newline' and 'model.image_newline'");
  c.image_newline_name = current ? "v.image_newline" : legacy ? "model.image_newline" : "";
}

// llama.cpp reads clip.projector_type first, then clip.vision.projector_type.
std::string read_projector_name(const GGUFFile& f) {
  const std::string top = f.get_string("clip.projector_type", "");
  const std::string vision = f.get_string("clip.vision.projector_type", "");
  if (!top.empty() && !vision.empty() && top != vision) {
    f.fail("clip.projector_type '" + top + "' and clip.vision.projector_type '" + vision + "' disagree");
  }
  return top.empty() ? vision : top;
}

}  // namespace

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
  c.n_block = f.require_int(p + "block_count");
  c.n_head = f.require_int(p + "attention.head_count");
  c.eps = static_cast<float>(f.get_float(p + "attention.layer_norm_epsilon", 1e-6));

  auto in_range = [&](const std::string& key, int64_t v, int64_t max) {
    if (v <= 0 || v > max) f.fail("metadata key '" + key + "' = " + std::to_string(v) + " is out of range");
  };
  in_range(p + "image_size", c.image_size, 8192);
  in_range(p + "patch_size", c.patch_size, 256);
  in_range(p + "embedding_length", c.n_embd, 1 << 16);
  in_range(p + "feed_forward_length", c.n_ff, 1 << 18);
  in_range(p + "block_count", c.n_block, 1024);
  in_range(p + "attention.head_count", c.n_head, 1024);
  // A stride-P conv drops the remainder (384 = 27 * 14 + 6 for so400m).
  if (c.image_size < c.patch_size) f.fail("clip.vision.image_size is smaller than clip.vision.patch_size");
  if (c.n_embd % c.n_head != 0) f.fail("clip.vision.embedding_length must be a multiple of attention.head_count");
  if (!(c.eps > 0.0f && c.eps < 1.0f)) f.fail("clip.vision.attention.layer_norm_epsilon is out of range");
  c.grid = c.image_size / c.patch_size;
  c.n_tokens = c.grid * c.grid;
  if (c.n_tokens > 65536) f.fail("too many vision tokens per image");
  c.head_dim = c.n_embd / c.n_head;

  c.projector_name = read_projector_name(f);
  if (c.projector_name == "none") {
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
  resolve_layers(f, c);
  resolve_projection(f, c);
  resolve_names(f, c);
  c.out_grid = (c.grid + c.downsample - 1) / c.downsample;
  c.n_out_tokens = c.out_grid * c.out_grid;
  return c;
}

}  // namespace bluelm
