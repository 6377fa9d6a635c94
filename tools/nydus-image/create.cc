#include "tools/nydus-image/create.h"

#include <spdlog/spdlog.h>

#include "common/file_write.h"
#include "tools/nydus-image/blob_writer.h"
#include "tools/nydus-image/bootstrap_writer.h"
#include "tools/nydus-image/dir_scanner.h"
#include "tools/nydus-image/tar_reader.h"

namespace nydus::builder {

Result<CreateResult> run_create(const CreateOptions& opts) {
  Image img;
  img.chunk_size = opts.chunk_size;
  img.compressor = opts.compressor;
  img.digester = opts.digester;

  BlobOptions bopts{opts.blob_dir, opts.compressor, opts.digester, opts.chunk_size, opts.threads};
  NYDUS_ASSIGN_OR_RETURN(auto blob, BlobWriter::create(bopts, img));
  if (opts.source_type == SourceType::kTar) {
    WhiteoutSpec spec = opts.whiteout_spec.value_or(WhiteoutSpec::kOci);
    NYDUS_ASSIGN_OR_RETURN(img.root, read_tar_layer(opts.source, spec, *blob));
  } else {
    WhiteoutSpec spec = opts.whiteout_spec.value_or(WhiteoutSpec::kNone);
    NYDUS_ASSIGN_OR_RETURN(img.root, scan_directory(opts.source, spec));
    NYDUS_TRY(add_directory_content(img.root, *blob));
  }
  NYDUS_ASSIGN_OR_RETURN(auto blob_id, blob->finish());
  NYDUS_ASSIGN_OR_RETURN(auto bytes, write_bootstrap(img));
  NYDUS_TRY(write_file_atomic(opts.bootstrap, bytes, 0644, Durability::kNotDurable));

  CreateResult r;
  r.blob_id = blob_id;
  r.chunks = img.chunks.size();
  if (!img.blobs.empty()) r.blob_size = img.blobs[0].ci_offset + img.blobs[0].ci_compressed_size + rafs::kBlockSize;
  r.bootstrap_size = bytes.size();
  walk(img.root, [&](const std::string&, const InodePtr&, const Inode*) { ++r.inodes; });
  return r;
}

}  // namespace nydus::builder
