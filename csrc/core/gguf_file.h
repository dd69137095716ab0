// GGUF v2/v3 reader over a read-only mmap. Everything is validated on open:
// a GGUFFile that constructs can be read without further bounds checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/block_formats.h"

namespace bluelm {

enum class GGUFValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* gguf_value_type_name(GGUFValueType t);

struct GGUFValue {
  GGUFValueType type = GGUFValueType::UINT8;
  // Scalars: raw little-endian bytes at `data`. Numeric arrays: `count` elements
  // of `elem_type` at `data` (inside the mapping, possibly unaligned).
  const uint8_t* data = nullptr;
  GGUFValueType elem_type = GGUFValueType::UINT8;
  uint64_t count = 0;
  std::string str;                // STRING
  std::vector<std::string> strs;  // ARRAY of STRING

  bool is_integer() const;
  bool is_number() const;
  int64_t as_int() const;    // integer or bool scalars
  double as_double() const;  // any numeric scalar
  // Element i of a numeric array as double / int64.
  double array_double(uint64_t i) const;
  int64_t array_int(uint64_t i) const;
};

struct GGUFTensor {
  std::string name;
  uint32_t type = 0;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
  uint64_t offset = 0;           // absolute offset in the file
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;
};

class GGUFFile {
 public:
  // Opens, maps and validates; throws FileError or FormatError naming the file
  // and the field at fault.
  explicit GGUFFile(const std::string& path);
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }

  const std::vector<std::string>& keys() const { return key_order_; }
  const GGUFValue* find(const std::string& key) const;
  const std::vector<GGUFTensor>& tensors() const { return tensors_; }
  const GGUFTensor* find_tensor(const std::string& name) const;

  // Typed look-ups; a present key of the wrong type is a FormatError.
  bool has(const std::string& key) const { return find(key) != nullptr; }
  int64_t get_int(const std::string& key, int64_t fallback) const;
  int64_t require_int(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  const GGUFValue& require_array(const std::string& key) const;

  // Tells the kernel that the pages of [ptr, ptr+n) are no longer needed.
  void release_pages(const void* ptr, size_t n) const;

  [[noreturn]] void fail(const std::string& what) const;

 private:
  void parse();

  std::string path_;
  int fd_ = -1;
  uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::string> key_order_;
  std::map<std::string, GGUFValue> kv_;
  std::vector<GGUFTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace bluelm
