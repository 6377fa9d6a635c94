// `nydus-image create`: one layer (a directory or an OCI layer tar) into a
// bootstrap plus one data blob.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"
#include "nydusd/rafs/layout.h"
#include "tools/nydus-image/whiteout.h"

namespace nydus::builder {

enum class SourceType { kDirectory, kTar };

struct CreateOptions {
  SourceType source_type = SourceType::kDirectory;
  std::string source;
  std::string bootstrap;
  std::string blob_dir;
  rafs::Compressor compressor = rafs::Compressor::kZstd;
  rafs::Digester digester = rafs::Digester::kBlake3;
  uint32_t chunk_size = rafs::kDefaultChunkSize;
  std::optional<WhiteoutSpec> whiteout_spec;  // default: oci for tar, none for directories
  unsigned threads = 0;
};

struct CreateResult {
  std::optional<std::string> blob_id;  // none when the layer has no file data
  uint64_t inodes = 0;
  uint64_t chunks = 0;
  uint64_t blob_size = 0;
  uint64_t bootstrap_size = 0;
};

Result<CreateResult> run_create(const CreateOptions& opts);

}  // namespace nydus::builder
