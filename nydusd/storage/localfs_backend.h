// The localfs backend: blobs are plain files, <dir>/<blob_id>, or one
// explicitly named blob_file for an image with a single blob. Files are
// opened once at open() and read with pread, so reads never touch the
// directory again and concurrent reads need no locking.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "nydusd/storage/backend.h"

namespace nydus::storage {

class LocalFsBackend final : public Backend {
 public:
  static Result<std::unique_ptr<LocalFsBackend>> open(const BackendConfig& config,
                                                      const std::vector<rafs::BlobInfo>& blobs,
                                                      StorageMetrics* metrics);

  std::string_view type() const override { return "localfs"; }

 protected:
  Status do_read(const std::string& blob_id, uint64_t offset, std::span<uint8_t> out) override;

 private:
  struct BlobFile {
    std::string path;
    UniqueFd fd;
    uint64_t size = 0;
  };

  explicit LocalFsBackend(StorageMetrics* metrics) : Backend(metrics) {}

  // Immutable after open(), so lookups need no lock.
  std::map<std::string, BlobFile, std::less<>> files_;
};

}  // namespace nydus::storage
