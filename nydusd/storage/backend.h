// Storage backends: where compressed blob bytes come from.
//
// A Backend reads byte ranges of a blob object named by its blob id. Only
// "localfs" exists for now (one file per blob in a directory, or a single
// blob file); "registry" will implement the same interface later.
//
// Every read goes through Backend::read(), which counts it in the
// StorageMetrics the backend was opened with (read count, bytes, errors,
// latency), so each backend instance reports its own numbers and test doubles
// are counted exactly like the real thing.
//
// Thread safety: read() may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/storage.h"

namespace nydus::storage {

class Backend {
 public:
  explicit Backend(StorageMetrics* metrics) : metrics_(metrics) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual std::string_view type() const = 0;

  // Reads exactly out.size() bytes at `offset` of blob `blob_id`. A range
  // past the end of the blob is kCorrupt (the bootstrap pointed outside it).
  Status read(const std::string& blob_id, uint64_t offset, std::span<uint8_t> out);

 protected:
  virtual Status do_read(const std::string& blob_id, uint64_t offset, std::span<uint8_t> out) = 0;

 private:
  StorageMetrics* metrics_;  // not owned; may be null (no counting)
};

// Opens the backend named by config.type for the given blobs. Every blob must
// be reachable at open time, so a missing directory or blob file is reported
// here, naming the path, and not on the first read.
Result<std::unique_ptr<Backend>> open_backend(const BackendConfig& config,
                                              const std::vector<rafs::BlobInfo>& blobs,
                                              StorageMetrics* metrics);

// Blob ids become file names (<dir>/<id>, <work_dir>/<id>.blob.data); an id
// from a hostile bootstrap must not escape the directory.
Status check_blob_id(std::string_view blob_id);

}  // namespace nydus::storage
