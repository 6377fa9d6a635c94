#include "tools/nydus-image/check.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/digest.h"
#include "nydusd/rafs/blob_reader.h"

namespace nydus::builder {

namespace {

const char* type_name(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "chardev";
    case S_IFBLK: return "blockdev";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "unknown";
  }
}

// JSON strings must be UTF-8; names that are not get an exact hex twin.
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = uint8_t(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

struct EvpCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

class Checker {
 public:
  Checker(std::shared_ptr<const rafs::Bootstrap> bs, const CheckOptions& opts)
      : bs_(*bs), opts_(opts) {
    if (opts.blob_dir) reader_.emplace(std::move(bs), *opts.blob_dir);
  }

  Result<nlohmann::json> run() {
    nlohmann::json out;
    out["bootstrap"] = opts_.bootstrap;
    const rafs::SuperInfo& sb = bs_.super();
    out["chunk_size"] = sb.chunk_size;
    out["inodes"] = sb.inodes;
    nlohmann::json blobs = nlohmann::json::array();
    for (const auto& b : bs_.blobs()) {
      blobs.push_back({{"id", b.blob_id},
                       {"chunk_count", b.chunk_count},
                       {"compressor", uint32_t(b.compressor)},
                       {"digester", uint32_t(b.digester)},
                       {"compressed_size", b.compressed_size},
                       {"uncompressed_size", b.uncompressed_size}});
      if (reader_) NYDUS_TRY(reader_->chunk_infos(b.index));  // a missing or damaged blob fails early
    }
    out["blobs"] = std::move(blobs);
    files_ = nlohmann::json::array();
    NYDUS_TRY(visit("/", bs_.root_nid()));
    out["files"] = std::move(files_);
    return out;
  }

 private:
  // Pre-order, children in directory (byte) order. Depth is bounded by the
  // reader's validate_tree(), which ran first and refuses cycles.
  Status visit(const std::string& path, uint64_t nid) {
    NYDUS_ASSIGN_OR_RETURN(rafs::InodeAttr a, bs_.getattr(nid));
    NYDUS_TRY(describe(path, a));
    if (!S_ISDIR(a.mode)) return ok_status();
    std::vector<rafs::DirEntry> entries;
    NYDUS_TRY(bs_.readdir(nid, 0, [&](const rafs::DirEntry& e, uint64_t) {
      if (e.name != "." && e.name != "..") entries.push_back(e);
      return true;
    }));
    for (const auto& e : entries) NYDUS_TRY(visit(path == "/" ? "/" + e.name : path + "/" + e.name, e.nid));
    return ok_status();
  }

  Status describe(const std::string& path, const rafs::InodeAttr& a) {
    if (opts_.verbose) std::printf("%s\n", path.c_str());
    nlohmann::json f = {{"path", path},         {"type", type_name(a.mode)}, {"nid", a.nid},
                        {"mode", a.mode & 07777}, {"uid", a.uid},            {"gid", a.gid},
                        {"size", a.size},       {"nlink", a.nlink},          {"mtime", a.mtime},
                        {"mtime_nsec", a.mtime_nsec}};
    if (!valid_utf8(path)) f["path_hex"] = rafs::to_hex(std::span(reinterpret_cast<const uint8_t*>(path.data()), path.size()));
    if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
      f["rdev_major"] = major(a.rdev);
      f["rdev_minor"] = minor(a.rdev);
    }
    if (S_ISLNK(a.mode)) {
      NYDUS_ASSIGN_OR_RETURN(std::string target, bs_.readlink(a.nid));
      f["target"] = target;
    }
    nlohmann::json xattrs = nlohmann::json::object();
    NYDUS_ASSIGN_OR_RETURN(auto list, bs_.xattrs(a.nid));
    for (const auto& x : list)
      xattrs[x.name] = rafs::to_hex(std::span(reinterpret_cast<const uint8_t*>(x.value.data()), x.value.size()));
    f["xattrs"] = std::move(xattrs);
    if (S_ISREG(a.mode) && opts_.blob_dir) {
      NYDUS_ASSIGN_OR_RETURN(f["digest"], content_digest(a));
    }
    files_.push_back(std::move(f));
    return ok_status();
  }

  // SHA-256 of the file's content, read chunk by chunk from the blobs; each
  // chunk is checked against the CI array and its digest.
  Result<std::string> content_digest(const rafs::InodeAttr& a) {
    if (auto it = digests_.find(a.nid); it != digests_.end()) return it->second;  // hard link
    std::unique_ptr<EVP_MD_CTX, EvpCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
      return make_error(ErrorKind::kInternal, "EVP sha256 init failed");
    NYDUS_ASSIGN_OR_RETURN(auto refs, bs_.map_range(a.nid, 0, a.size));
    uint64_t total = 0;
    for (const auto& r : refs) {
      NYDUS_ASSIGN_OR_RETURN(auto data, reader_->read_chunk(r));
      EVP_DigestUpdate(ctx.get(), data.data(), data.size());
      total += data.size();
    }
    if (total != a.size)
      return make_error(ErrorKind::kCorrupt, "nid {}: chunks hold {} bytes, the file has {}", a.nid, total, a.size);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &len);
    std::string hex = rafs::to_hex(std::span<const uint8_t>(md, len));
    digests_.emplace(a.nid, hex);
    return hex;
  }

  const rafs::Bootstrap& bs_;
  const CheckOptions& opts_;
  std::optional<rafs::BlobReader> reader_;
  std::map<uint64_t, std::string> digests_;
  nlohmann::json files_;
};

}  // namespace

Result<nlohmann::json> run_check(const CheckOptions& opts) {
  NYDUS_ASSIGN_OR_RETURN(auto bs, rafs::Bootstrap::open(opts.bootstrap));
  NYDUS_TRY(bs->validate_tree());
  return Checker(std::move(bs), opts).run();
}

}  // namespace nydus::builder
