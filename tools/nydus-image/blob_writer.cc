#include "tools/nydus-image/blob_writer.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_set>
#include <span>
#include <thread>

#include "common/file_io.h"
#include "common/unique_fd.h"
#include "nydusd/rafs/digest.h"
#include "tools/nydus-image/compress_pool.h"

namespace nydus::builder {

using rafs::kBlockSize;
using rafs::round_up;

namespace {

// Jobs allowed in flight per worker before add_file() waits for the oldest
// one, enough to keep every worker busy; the byte cap bounds memory with
// large chunks on many CPUs.
constexpr size_t kInflightPerWorker = 4;
constexpr uint64_t kMaxInflightBytes = 256ull << 20;
// Limits of the CI v1 encoding and of the blob table (§2, §10, §12).
constexpr uint64_t kMaxCompressedOffset = 1ull << 40;
constexpr uint64_t kMaxUncompressedSize = 1ull << 44;

struct EvpCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

class BlobWriter::Impl {
 public:
  Impl(const BlobOptions& opts, Image& img)
      : opts_(opts),
        img_(img),
        blob_index_(uint32_t(img.blobs.size())),
        workers_(worker_count(opts.threads)),
        max_inflight_(std::max<size_t>(2, std::min<uint64_t>(kInflightPerWorker * workers_,
                                                            kMaxInflightBytes / opts.chunk_size))),
        pool_(opts.compressor, opts.digester, workers_) {}

  ~Impl() {
    if (!tmp_path_.empty()) unlink(tmp_path_.c_str());
  }

  Status open() {
    tmp_path_ = opts_.blob_dir + "/.blob-XXXXXX";
    int fd = mkostemp(tmp_path_.data(), O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      tmp_path_.clear();
      return Error::from_errno(err, "create a blob in " + opts_.blob_dir);
    }
    fd_.reset(fd);
    sha_.reset(EVP_MD_CTX_new());
    if (!sha_ || EVP_DigestInit_ex(sha_.get(), EVP_sha256(), nullptr) != 1)
      return make_error(ErrorKind::kInternal, "EVP sha256 init failed");
    return ok_status();
  }

  Result<std::vector<uint32_t>> add_file(uint64_t size, const ReadFn& read) {
    std::vector<uint32_t> chunks;
    chunks.reserve(round_up(size, opts_.chunk_size) / opts_.chunk_size);
    for (uint64_t off = 0; off < size; off += opts_.chunk_size) {
      size_t len = size_t(std::min<uint64_t>(opts_.chunk_size, size - off));
      std::vector<uint8_t> buf(len);
      size_t got = 0;
      while (got < len) {
        NYDUS_ASSIGN_OR_RETURN(size_t n, read(buf.data() + got, len - got));
        if (n == 0) return make_error(ErrorKind::kIo, "file shrank: got {} of {} bytes", off + got, size);
        got += n;
      }
      NYDUS_ASSIGN_OR_RETURN(uint32_t idx, add_chunk(std::move(buf), off));
      chunks.push_back(idx);
    }
    return chunks;
  }

  Result<std::optional<std::string>> finish() {
    while (!inflight_.empty()) NYDUS_TRY(commit_oldest());
    NYDUS_TRY(resolve_files());
    if (ci_.empty()) {
      unlink(tmp_path_.c_str());
      tmp_path_.clear();
      return std::optional<std::string>();
    }
    NYDUS_TRY(flush());
    const uint64_t ci_offset = offset_;
    std::vector<uint8_t> ci_raw(ci_.size() * sizeof(rafs::ChunkInfoV1));
    for (size_t i = 0; i < ci_.size(); ++i) {
      rafs::ChunkInfoV1 e = rafs::encode_ci_v1(ci_[i]);
      std::memcpy(ci_raw.data() + i * sizeof(e), &e, sizeof(e));
    }
    std::vector<uint8_t> ci_packed;
    bool smaller = false;
    NYDUS_TRY(compress_if_smaller(opts_.compressor, ci_raw, ci_packed, smaller));
    const std::vector<uint8_t>& ci_bytes = smaller ? ci_packed : ci_raw;
    rafs::Compressor ci_algo = smaller ? opts_.compressor : rafs::Compressor::kNone;
    NYDUS_TRY(append(ci_bytes.data(), ci_bytes.size()));

    rafs::BlobCiHeader hdr{};
    hdr.magic = rafs::kBlobCiMagic;
    hdr.features = rafs::blob_features::kAligned;
    hdr.ci_compressor = uint32_t(ci_algo);
    hdr.ci_entries = uint32_t(ci_.size());
    hdr.ci_offset = ci_offset;
    hdr.ci_compressed_size = ci_bytes.size();
    hdr.ci_uncompressed_size = ci_raw.size();
    hdr.magic2 = rafs::kBlobCiMagic;
    NYDUS_TRY(append(&hdr, sizeof(hdr)));
    NYDUS_TRY(flush());

    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (EVP_DigestFinal_ex(sha_.get(), md, &md_len) != 1) return make_error(ErrorKind::kInternal, "sha256 final");
    std::string blob_id = rafs::to_hex(std::span<const uint8_t>(md, md_len));
    std::string final_path = opts_.blob_dir + "/" + blob_id;
    if (fchmod(fd_.get(), 0644) != 0 || rename(tmp_path_.c_str(), final_path.c_str()) != 0)
      return Error::from_errno(errno, "save blob " + final_path);
    tmp_path_.clear();

    rafs::BlobInfo info;
    info.index = blob_index_;
    info.blob_id = blob_id;
    info.chunk_size = opts_.chunk_size;
    info.chunk_count = uint32_t(ci_.size());
    info.compressor = opts_.compressor;
    info.digester = opts_.digester;
    info.features = rafs::blob_features::kAligned;
    info.compressed_size = ci_offset;  // no CAP_TAR_TOC: the end of the chunk data (§10)
    info.uncompressed_size = uncompressed_end_;
    info.ci_compressor = ci_algo;
    info.ci_offset = ci_offset;
    info.ci_compressed_size = ci_bytes.size();
    info.ci_uncompressed_size = ci_raw.size();
    img_.blobs.push_back(std::move(info));
    return std::optional<std::string>(blob_id);
  }

 private:
  static unsigned worker_count(unsigned requested) {
    if (requested) return requested;
    return std::max(1u, std::thread::hardware_concurrency());
  }

  // Queues a chunk for digest and compression; returns its slot, which
  // commit_oldest() later resolves to an index into img.chunks.
  Result<uint32_t> add_chunk(std::vector<uint8_t> data, uint64_t file_offset) {
    uint32_t slot = uint32_t(slots_.size());
    slots_.push_back(kUnresolved);
    inflight_.push_back({slot, file_offset, pool_.submit(std::move(data))});
    while (inflight_.size() > max_inflight_) NYDUS_TRY(commit_oldest());
    return slot;
  }

  // Waits for the oldest job; a known digest resolves to the existing
  // chunk, a new one is appended. Commits run in submission order, so the
  // blob layout does not depend on thread timing.
  Status commit_oldest() {
    Pending p = std::move(inflight_.front());
    inflight_.pop_front();
    pool_.wait(*p.job);
    NYDUS_TRY(p.job->status);
    if (auto it = by_digest_.find(p.job->digest); it != by_digest_.end()) {
      slots_[p.slot] = it->second;
      return ok_status();
    }
    if (ci_.size() >= rafs::kMaxChunksPerBlob)
      return make_error(ErrorKind::kTooLarge, "more than {} unique chunks in one blob", rafs::kMaxChunksPerBlob);
    const std::vector<uint8_t>& bytes = p.job->compressed ? p.job->output : p.job->data;
    rafs::ChunkInfo ci;
    ci.uncompressed_offset = uncompressed_end_;
    ci.uncompressed_size = uint32_t(p.job->data.size());
    ci.compressed_offset = offset_;
    ci.compressed_size = uint32_t(bytes.size());
    ci.compressed = p.job->compressed;
    uncompressed_end_ += round_up(p.job->data.size(), kBlockSize);
    if (uncompressed_end_ > kMaxUncompressedSize)
      return make_error(ErrorKind::kTooLarge, "blob exceeds {} uncompressed bytes", kMaxUncompressedSize);

    rafs::ChunkTableEntry e{};
    std::memcpy(e.digest, p.job->digest.data(), p.job->digest.size());
    e.blob_index = blob_index_;
    e.flags = ci.compressed ? rafs::chunk_flags::kCompressed : 0;
    e.compressed_size = ci.compressed_size;
    e.uncompressed_size = ci.uncompressed_size;
    e.compressed_offset = ci.compressed_offset;
    e.uncompressed_offset = ci.uncompressed_offset;
    e.file_offset = p.file_offset;
    e.index = uint32_t(ci_.size());
    uint32_t idx = uint32_t(img_.chunks.size());
    img_.chunks.push_back(e);
    ci_.push_back(ci);
    by_digest_.emplace(p.job->digest, idx);
    slots_[p.slot] = idx;
    NYDUS_TRY(append(bytes.data(), bytes.size()));
    if (offset_ > kMaxCompressedOffset)
      return make_error(ErrorKind::kTooLarge, "blob exceeds {} bytes", kMaxCompressedOffset);
    return ok_status();
  }

  // Rewrites the slots in every file's chunk list into img.chunks indexes.
  Status resolve_files() {
    std::unordered_set<const Inode*> done;
    Status st;
    if (!img_.root) return st;
    walk(img_.root, [&](const std::string& path, const InodePtr& n, const Inode*) {
      if (!st.ok() || !n->is_reg() || !done.insert(n.get()).second) return;
      for (auto& c : n->chunks) {
        if (c >= slots_.size() || slots_[c] == kUnresolved) {
          st = make_error(ErrorKind::kInternal, "{}: chunk slot {} was never written", path, c);
          return;
        }
        c = slots_[c];
      }
    });
    return st;
  }

  Status append(const void* p, size_t n) {
    auto* bytes = static_cast<const uint8_t*>(p);
    if (EVP_DigestUpdate(sha_.get(), bytes, n) != 1) return make_error(ErrorKind::kInternal, "sha256 update");
    offset_ += n;
    if (buffer_.size() + n > kWriteBuffer) NYDUS_TRY(flush());
    if (n >= kWriteBuffer) return write_all(bytes, n);
    buffer_.insert(buffer_.end(), bytes, bytes + n);
    return ok_status();
  }

  Status flush() {
    NYDUS_TRY(write_all(buffer_.data(), buffer_.size()));
    buffer_.clear();
    return ok_status();
  }

  Status write_all(const uint8_t* p, size_t n) {
    NYDUS_TRY(pwrite_all(fd_.get(), {p, n}, written_, tmp_path_));
    written_ += n;
    return ok_status();
  }

  static constexpr size_t kWriteBuffer = 4 << 20;

  BlobOptions opts_;
  Image& img_;
  uint32_t blob_index_;
  unsigned workers_;
  size_t max_inflight_;
  CompressPool pool_;
  std::string tmp_path_;
  UniqueFd fd_;
  std::unique_ptr<EVP_MD_CTX, EvpCtxFree> sha_;
  std::vector<uint8_t> buffer_;
  uint64_t offset_ = 0;             // bytes appended so far (compressed space)
  uint64_t written_ = 0;            // bytes of them in the file (the rest is buffered)
  uint64_t uncompressed_end_ = 0;   // next chunk's uncompressed offset
  std::vector<rafs::ChunkInfo> ci_;  // by CI index
  std::map<rafs::Digest, uint32_t> by_digest_;  // -> index into img.chunks
  struct Pending {
    uint32_t slot;
    uint64_t file_offset;
    std::shared_ptr<CompressJob> job;
  };
  std::deque<Pending> inflight_;
  static constexpr uint32_t kUnresolved = UINT32_MAX;
  std::vector<uint32_t> slots_;  // slot -> index into img.chunks

};

BlobWriter::BlobWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BlobWriter::~BlobWriter() = default;

Result<std::unique_ptr<BlobWriter>> BlobWriter::create(const BlobOptions& opts, Image& img) {
  if (opts.chunk_size < rafs::kMinChunkSize || opts.chunk_size > rafs::kMaxChunkSize ||
      (opts.chunk_size & (opts.chunk_size - 1)) != 0)
    return make_error(ErrorKind::kInvalidArgument, "chunk size {:#x} is not a power of two in 4 KiB..16 MiB",
                      opts.chunk_size);
  auto impl = std::make_unique<Impl>(opts, img);
  NYDUS_TRY(impl->open());
  return std::unique_ptr<BlobWriter>(new BlobWriter(std::move(impl)));
}

Result<std::vector<uint32_t>> BlobWriter::add_file(uint64_t size, const ReadFn& read) {
  return impl_->add_file(size, read);
}

Result<std::optional<std::string>> BlobWriter::finish() { return impl_->finish(); }

}  // namespace nydus::builder
