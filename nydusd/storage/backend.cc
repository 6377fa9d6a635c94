#include "nydusd/storage/backend.h"

#include <chrono>

#include "nydusd/storage/localfs_backend.h"

namespace nydus::storage {

Status Backend::read(const std::string& blob_id, uint64_t offset, std::span<uint8_t> out) {
  auto start = std::chrono::steady_clock::now();
  Status st = do_read(blob_id, offset, out);
  if (metrics_ != nullptr) {
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    metrics_->backend_read_count.fetch_add(1, std::memory_order_relaxed);
    metrics_->backend_read_latency_micros_total.fetch_add(uint64_t(micros),
                                                          std::memory_order_relaxed);
    if (st.ok()) {
      metrics_->backend_read_bytes.fetch_add(out.size(), std::memory_order_relaxed);
    } else {
      metrics_->backend_read_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return st;
}

Result<std::unique_ptr<Backend>> open_backend(const BackendConfig& config,
                                              const std::vector<rafs::BlobInfo>& blobs,
                                              StorageMetrics* metrics) {
  for (const auto& blob : blobs) NYDUS_TRY(check_blob_id(blob.blob_id));
  if (config.type == "localfs") {
    NYDUS_ASSIGN_OR_RETURN(auto backend, LocalFsBackend::open(config, blobs, metrics));
    return std::unique_ptr<Backend>(std::move(backend));
  }
  if (config.type.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "storage backend type is empty");
  }
  return make_error(ErrorKind::kUnsupported,
                    "unknown storage backend type \"{}\" (supported: localfs)", config.type);
}

Status check_blob_id(std::string_view blob_id) {
  // The blob table field is 64 bytes; ids are hex digests in practice, but
  // only path safety matters here.
  if (blob_id.empty() || blob_id.size() > 64 || blob_id == "." || blob_id == ".." ||
      blob_id.find('/') != std::string_view::npos ||
      blob_id.find('\0') != std::string_view::npos) {
    return make_error(ErrorKind::kCorrupt, "invalid blob id \"{}\" in bootstrap", blob_id);
  }
  return ok_status();
}

}  // namespace nydus::storage
