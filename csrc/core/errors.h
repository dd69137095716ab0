// Error types thrown by the core; csrc/python translates each to a Python exception.
#pragma once
#include <stdexcept>
#include <string>

namespace bluelm {

// The model file is malformed, truncated or uses something unsupported.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The file could not be opened or mapped (missing, permission, I/O).
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A caller passed an invalid argument (sampling values, sizes, token ids).
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The request does not fit the context window.
struct ContextOverflowError : std::length_error {
  using std::length_error::length_error;
};

}  // namespace bluelm
