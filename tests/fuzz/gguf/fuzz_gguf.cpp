// libFuzzer target for the GGUF reader: any bytes either open as a GGUFFile whose
// every value and tensor lies inside the file, or throw FormatError/FileError.
// Files that parse are then given to the LLaMA config and weight binder, which
// must also only ever throw the project's errors.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/errors.h"
#include "core/gguf_file.h"
#include "llm/llm_config.h"
#include "llm/llm_weights.h"

using namespace bluelm;

namespace {

// The reader takes a path: feed it through one in-memory file reused per input.
const std::string& input_path(int* fd_out) {
  static int fd = -1;
  static std::string path;
  if (fd < 0) {
    fd = memfd_create("gguf-fuzz", 0);
    if (fd < 0) std::abort();
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  *fd_out = fd;
  return path;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

// Touches every value the bindings expose, so ASan sees any read past a value.
uint64_t walk(const GGUFFile& f) {
  uint64_t sink = 0;
  for (const std::string& k : f.keys()) {
    const GGUFValue* v = f.find(k);
    check(v != nullptr, "listed key not found");
    if (v->type == GGUFValueType::STRING) {
      sink += v->str.size();
    } else if (v->type == GGUFValueType::ARRAY) {
      if (v->elem_type == GGUFValueType::STRING) {
        check(v->strs.size() == v->count, "string array count");
        for (const auto& s : v->strs) sink += s.size();
      } else {
        for (uint64_t i = 0; i < v->count; ++i) sink += static_cast<uint64_t>(v->array_int(i)) + static_cast<uint64_t>(v->array_double(i) != 0.0);
      }
    } else {
      sink += static_cast<uint64_t>(v->as_int()) + static_cast<uint64_t>(v->as_double() != 0.0);
    }
  }
  for (const GGUFTensor& t : f.tensors()) {
    check(t.offset >= f.data_offset(), "tensor before data section");
    check(t.offset <= f.file_size() && t.nbytes <= f.file_size() - t.offset, "tensor past end");
    check(f.find_tensor(t.name) == &t, "tensor index");
    if (t.nbytes > 0) sink += t.data[0] + t.data[t.nbytes - 1];
  }
  return sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = -1;
  const std::string& path = input_path(&fd);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  static volatile uint64_t sink = 0;
  try {
    GGUFFile f(path);
    sink = sink + walk(f);
    try {
      LlmConfig c = LlmConfig::from_gguf(f);
      sink = sink + static_cast<uint64_t>(c.n_layer);
    } catch (const FormatError&) {
    }
    LlmModel m(path);
    sink = sink + m.weight_bytes;
  } catch (const FormatError&) {
  } catch (const FileError&) {
  }
  return 0;
}
