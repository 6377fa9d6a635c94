// What a cachefiles object (one OPEN) serves: the bytes the kernel asks for
// in READ requests, and the size answered in `copen`.
//
//   bootstrap object   cookie = the entry id (fsid); bytes = the bootstrap
//                      file; size = its file size
//   data blob object   cookie = the device tag (blob id); bytes = the blob's
//                      uncompressed address space, each chunk at its
//                      uncompressed offset (blob_range.h); size = the blob
//                      table's uncompressed_size
//
// Sizes must be stable across daemon restarts: a copen size that differs
// from the one stored with the kernel's cache file makes it discard the file
// (fscache-facts.md §2.7).
//
// Thread safety: read() may be called from every worker thread at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus::fscache {

class ObjectSource {
 public:
  virtual ~ObjectSource() = default;
  // The size answered in copen.
  virtual uint64_t size() const = 0;
  // Fills `out` with the object's bytes [offset, offset + out.size()); bytes
  // past the end of the object (and padding between chunks) are zero.
  virtual Status read(uint64_t offset, std::span<uint8_t> out) = 0;
  // "bootstrap <id> (<path>)" / "blob <id>", for log lines.
  virtual std::string describe() const = 0;
  // The range a READ of [offset, end) should fill in the cache file: the
  // range itself, or (a data blob) the whole chunks it touches, so that the
  // kernel finds the rest of each chunk in its cache file instead of sending
  // more READs, each of which would fetch and decode the chunk again.
  virtual std::pair<uint64_t, uint64_t> fill_range(uint64_t offset, uint64_t end) { return {offset, end}; }
};

// A bootstrap file, opened once and read with pread.
class BootstrapSource final : public ObjectSource {
 public:
  static Result<std::shared_ptr<BootstrapSource>> open(const std::string& id, const std::string& path);

  uint64_t size() const override { return size_; }
  Status read(uint64_t offset, std::span<uint8_t> out) override;
  std::string describe() const override;

 private:
  BootstrapSource(std::string id, std::string path, UniqueFd fd, uint64_t size)
      : id_(std::move(id)), path_(std::move(path)), fd_(std::move(fd)), size_(size) {}

  std::string id_;
  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
};

}  // namespace nydus::fscache
