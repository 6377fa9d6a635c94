// Where the front ends (directory scanner, tar reader) send file content.
// The blob writer implements it; tests use a sink that only counts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "common/result.h"

namespace nydus::builder {

// Fills up to `len` bytes of `buf`; returns the number of bytes read, 0 at
// end of data.
using ReadFn = std::function<Result<size_t>(uint8_t* buf, size_t len)>;

class ContentSink {
 public:
  virtual ~ContentSink() = default;
  // Consumes exactly `size` bytes from `read` and returns the file's chunk
  // list, one id per chunk_size piece. Short input is an error. The ids may
  // be provisional until the sink is finished (see BlobWriter::finish()).
  virtual Result<std::vector<uint32_t>> add_file(uint64_t size, const ReadFn& read) = 0;
};

}  // namespace nydus::builder
