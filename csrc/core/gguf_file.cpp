#include "core/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "core/errors.h"

namespace bluelm {

namespace {

constexpr uint64_t kMaxDims = 4;
constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;

size_t scalar_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8:
    case GGUFValueType::INT8:
    case GGUFValueType::BOOL: return 1;
    case GGUFValueType::UINT16:
    case GGUFValueType::INT16: return 2;
    case GGUFValueType::UINT32:
    case GGUFValueType::INT32:
    case GGUFValueType::FLOAT32: return 4;
    case GGUFValueType::UINT64:
    case GGUFValueType::INT64:
    case GGUFValueType::FLOAT64: return 8;
    default: return 0;
  }
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

double load_number(GGUFValueType t, const uint8_t* p) {
  switch (t) {
    case GGUFValueType::UINT8: return load<uint8_t>(p);
    case GGUFValueType::INT8: return load<int8_t>(p);
    case GGUFValueType::BOOL: return load<uint8_t>(p) != 0;
    case GGUFValueType::UINT16: return load<uint16_t>(p);
    case GGUFValueType::INT16: return load<int16_t>(p);
    case GGUFValueType::UINT32: return load<uint32_t>(p);
    case GGUFValueType::INT32: return load<int32_t>(p);
    case GGUFValueType::FLOAT32: return load<float>(p);
    case GGUFValueType::UINT64: return static_cast<double>(load<uint64_t>(p));
    case GGUFValueType::INT64: return static_cast<double>(load<int64_t>(p));
    case GGUFValueType::FLOAT64: return load<double>(p);
    default: return 0.0;
  }
}

int64_t load_integer(GGUFValueType t, const uint8_t* p) {
  switch (t) {
    case GGUFValueType::UINT8: return load<uint8_t>(p);
    case GGUFValueType::INT8: return load<int8_t>(p);
    case GGUFValueType::BOOL: return load<uint8_t>(p) != 0;
    case GGUFValueType::UINT16: return load<uint16_t>(p);
    case GGUFValueType::INT16: return load<int16_t>(p);
    case GGUFValueType::UINT32: return load<uint32_t>(p);
    case GGUFValueType::INT32: return load<int32_t>(p);
    case GGUFValueType::UINT64: {
      const uint64_t v = load<uint64_t>(p);
      return v > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                 : int64_t(v);
    }
    case GGUFValueType::INT64: return load<int64_t>(p);
    default: return 0;
  }
}

bool integer_type(GGUFValueType t) {
  return t == GGUFValueType::UINT8 || t == GGUFValueType::INT8 || t == GGUFValueType::UINT16 ||
         t == GGUFValueType::INT16 || t == GGUFValueType::UINT32 || t == GGUFValueType::INT32 ||
         t == GGUFValueType::UINT64 || t == GGUFValueType::INT64 || t == GGUFValueType::BOOL;
}

// Bounded reader over the mapping; every read checks the remaining bytes.
class Cursor {
 public:
  Cursor(const GGUFFile& f, const uint8_t* base, uint64_t size) : f_(f), base_(base), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > remaining()) {
      f_.fail(std::string("truncated while reading ") + what + " at byte " + std::to_string(pos_) +
              " (needs " + std::to_string(n) + " bytes, " + std::to_string(remaining()) + " left)");
    }
    const uint8_t* p = base_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T read(const char* what) { return load<T>(take(sizeof(T), what)); }

  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > kMaxStringBytes || n > remaining()) {
      f_.fail(std::string(what) + ": string length " + std::to_string(n) + " at byte " +
              std::to_string(pos_ - 8) + " exceeds the file");
    }
    const uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  const GGUFFile& f_;
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

}  // namespace

const char* gguf_value_type_name(GGUFValueType t) {
  static const char* names[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                "bool",  "string", "array",  "uint64", "int64", "float64"};
  const uint32_t i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "invalid";
}

bool GGUFValue::is_integer() const { return integer_type(type); }
bool GGUFValue::is_number() const { return scalar_size(type) != 0; }
int64_t GGUFValue::as_int() const { return load_integer(type, data); }
double GGUFValue::as_double() const { return load_number(type, data); }
double GGUFValue::array_double(uint64_t i) const {
  return load_number(elem_type, data + i * scalar_size(elem_type));
}
int64_t GGUFValue::array_int(uint64_t i) const {
  return load_integer(elem_type, data + i * scalar_size(elem_type));
}

std::string GGUFTensor::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

GGUFFile::GGUFFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    throw FileError("cannot open model file '" + path + "': " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw FileError("cannot open model file '" + path + "': not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ < 24) {
    ::close(fd_);
    fd_ = -1;
    throw FormatError("'" + path + "' is not a GGUF file: it is only " + std::to_string(size_) +
                      " bytes");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (m == MAP_FAILED) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw FileError("cannot map model file '" + path + "': " + std::strerror(err));
  }
  map_ = static_cast<uint8_t*>(m);
  try {
    parse();
  } catch (...) {
    ::munmap(map_, size_);
    ::close(fd_);
    map_ = nullptr;
    fd_ = -1;
    throw;
  }
}

GGUFFile::~GGUFFile() {
  if (map_) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void GGUFFile::fail(const std::string& what) const {
  throw FormatError("invalid GGUF file '" + path_ + "': " + what);
}

void GGUFFile::parse() {
  Cursor c(*this, map_, size_);
  const uint8_t* magic = c.take(4, "magic");
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    if (std::memcmp(magic, "FUGG", 4) == 0) fail("big-endian GGUF files are not supported");
    throw FormatError("'" + path_ + "' is not a GGUF file (bad magic bytes)");
  }
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    fail("version " + std::to_string(version_) + " is not supported (only 2 and 3)");
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor_count");
  const uint64_t n_kv = c.read<uint64_t>("metadata_kv_count");
  // Each key/value takes at least 8+4+1 bytes and each tensor info at least 8+4+8+4+8.
  if (n_kv > c.remaining() / 13) fail("metadata_kv_count " + std::to_string(n_kv) + " exceeds the file size");
  if (n_tensors > c.remaining() / 32) fail("tensor_count " + std::to_string(n_tensors) + " exceeds the file size");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    if (kv_.count(key)) fail("duplicate metadata key '" + key + "'");
    GGUFValue v;
    const uint32_t t = c.read<uint32_t>("metadata value type");
    if (t > 12) fail("metadata key '" + key + "' has unknown value type " + std::to_string(t));
    v.type = static_cast<GGUFValueType>(t);
    if (v.type == GGUFValueType::STRING) {
      v.str = c.read_string(key.c_str());
    } else if (v.type == GGUFValueType::ARRAY) {
      const uint32_t et = c.read<uint32_t>("array element type");
      if (et > 12) fail("metadata key '" + key + "' has unknown array element type " + std::to_string(et));
      v.elem_type = static_cast<GGUFValueType>(et);
      v.count = c.read<uint64_t>("array length");
      if (v.elem_type == GGUFValueType::ARRAY) fail("metadata key '" + key + "': nested arrays are not supported");
      if (v.elem_type == GGUFValueType::STRING) {
        if (v.count > c.remaining() / 8) fail("metadata key '" + key + "': array length " + std::to_string(v.count) + " exceeds the file");
        v.strs.reserve(v.count);
        for (uint64_t j = 0; j < v.count; ++j) v.strs.push_back(c.read_string(key.c_str()));
      } else {
        const size_t es = scalar_size(v.elem_type);
        if (v.count > c.remaining() / es) fail("metadata key '" + key + "': array length " + std::to_string(v.count) + " exceeds the file");
        v.data = c.take(v.count * es, key.c_str());
      }
    } else {
      v.data = c.take(scalar_size(v.type), key.c_str());
      if (v.type == GGUFValueType::BOOL && *v.data > 1) fail("metadata key '" + key + "': bool value " + std::to_string(*v.data) + " is neither 0 nor 1");
    }
    key_order_.push_back(key);
    kv_.emplace(std::move(key), std::move(v));
  }

  if (const GGUFValue* a = find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || (a->as_int() & (a->as_int() - 1)) != 0 || a->as_int() > (1 << 20)) {
      fail("general.alignment must be a power of two integer");
    }
    alignment_ = static_cast<uint64_t>(a->as_int());
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GGUFTensor t;
    t.name = c.read_string("tensor name");
    if (t.name.empty() || t.name.size() > 255) fail("tensor " + std::to_string(i) + " has an invalid name length " + std::to_string(t.name.size()));
    if (tensor_index_.count(t.name)) fail("duplicate tensor name '" + t.name + "'");
    const uint32_t nd = c.read<uint32_t>("tensor n_dims");
    if (nd == 0 || nd > kMaxDims) fail("tensor '" + t.name + "' has " + std::to_string(nd) + " dimensions (1 to 4 allowed)");
    t.n_dims = static_cast<int>(nd);
    int64_t total = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t n = c.read<uint64_t>("tensor dimension");
      if (n == 0 || n > uint64_t(std::numeric_limits<int64_t>::max())) fail("tensor '" + t.name + "' has invalid dimension " + std::to_string(n));
      t.ne[d] = static_cast<int64_t>(n);
      if (total > std::numeric_limits<int64_t>::max() / t.ne[d]) fail("tensor '" + t.name + "': element count overflows");
      total *= t.ne[d];
    }
    t.type = c.read<uint32_t>("tensor type");
    const uint64_t rel = c.read<uint64_t>("tensor offset");
    const TypeInfo* ti = type_info(t.type);
    if (ti == nullptr) fail("tensor '" + t.name + "' has type " + std::to_string(t.type) + " (" + type_name(t.type) + "), which this runtime does not support (supported: " + supported_type_names() + ")");
    if (t.ne[0] % ti->block_size != 0) fail("tensor '" + t.name + "' row length " + std::to_string(t.ne[0]) + " is not a multiple of the " + ti->name + " block size (" + std::to_string(ti->block_size) + ")");
    const uint64_t blocks = static_cast<uint64_t>(total / ti->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / ti->block_bytes) fail("tensor '" + t.name + "': byte size overflows");
    t.nbytes = blocks * ti->block_bytes;
    if (rel % alignment_ != 0) fail("tensor '" + t.name + "' offset " + std::to_string(rel) + " is not aligned to " + std::to_string(alignment_));
    t.offset = rel;  // made absolute below
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > size_) fail("tensor data section starts at " + std::to_string(data_offset_) + ", past the end of the file (" + std::to_string(size_) + " bytes)");
  for (auto& t : tensors_) {
    if (t.offset > size_ || t.nbytes > size_ || data_offset_ > size_ - t.offset || t.nbytes > size_ - data_offset_ - t.offset) {
      fail("tensor '" + t.name + "' data (offset " + std::to_string(t.offset) + ", " + std::to_string(t.nbytes) + " bytes) runs past the end of the file (" + std::to_string(size_) + " bytes)");
    }
    t.offset += data_offset_;
    t.data = map_ + t.offset;
  }
  // Each tensor's blocks must fit before the next tensor's data: a shape that
  // needs more blocks than the file holds for it would read another tensor.
  std::vector<const GGUFTensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GGUFTensor* a, const GGUFTensor* b) { return a->offset < b->offset; });
  for (size_t i = 0; i + 1 < by_offset.size(); ++i) {
    const GGUFTensor& t = *by_offset[i];
    const GGUFTensor& next = *by_offset[i + 1];
    if (t.nbytes > next.offset - t.offset) {
      const TypeInfo* ti = type_info(t.type);
      fail("tensor '" + t.name + "' of shape " + t.shape_string() + " needs " + std::to_string(t.nbytes / ti->block_bytes) +
           " " + ti->name + " blocks (" + std::to_string(t.nbytes) + " bytes), but its data holds only " +
           std::to_string((next.offset - t.offset) / ti->block_bytes) + " before tensor '" + next.name + "' begins");
    }
  }
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GGUFTensor* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

int64_t GGUFFile::get_int(const std::string& key, int64_t fallback) const {
  const GGUFValue* v = find(key);
  if (!v) return fallback;
  if (!v->is_integer()) fail("metadata key '" + key + "' should be an integer, found " + gguf_value_type_name(v->type));
  return v->as_int();
}

int64_t GGUFFile::require_int(const std::string& key) const {
  if (!has(key)) fail("required metadata key '" + key + "' is missing");
  return get_int(key, 0);
}

double GGUFFile::get_float(const std::string& key, double fallback) const {
  const GGUFValue* v = find(key);
  if (!v) return fallback;
  if (!v->is_number()) fail("metadata key '" + key + "' should be a number, found " + gguf_value_type_name(v->type));
  return v->as_double();
}

std::string GGUFFile::get_string(const std::string& key, const std::string& fallback) const {
  const GGUFValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GGUFValueType::STRING) fail("metadata key '" + key + "' should be a string, found " + gguf_value_type_name(v->type));
  return v->str;
}

const GGUFValue& GGUFFile::require_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) fail("required metadata key '" + key + "' is missing");
  if (v->type != GGUFValueType::ARRAY) fail("metadata key '" + key + "' should be an array, found " + gguf_value_type_name(v->type));
  return *v;
}

void GGUFFile::release_pages(const void* ptr, size_t n) const {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t b = (reinterpret_cast<uintptr_t>(ptr) + page - 1) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(ptr) + n) & ~(page - 1);
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace bluelm
