// The blob registry of fscache mode: which (domain, cookie) pairs this
// daemon serves, i.e. the semantics of PUT / DELETE / GET /api/v2/blobs
// (reference-nydusd.md §2, §8.5) and of the blob list saved for failover.
//
// Keys follow the kernel: an OPEN names the volume "erofs,<domain>" and a
// cookie; the domain is the mount's domain_id, or its fsid without one. So:
//
//   bind(entry)   opens the bootstrap (RAFS v6 only), registers it as cookie
//                 entry.id in domain D = entry.effective_domain(), and every
//                 blob of its blob table as cookie <blob id> in D. A bootstrap
//                 id may be bound once per domain (kAlreadyExists); data
//                 blobs are shared by every bootstrap of the domain that
//                 lists them and reference-counted. A bootstrap id equal to a
//                 blob id of the same domain is refused (one cookie space).
//                 Either everything is registered or nothing is.
//   unbind(d)     drops domain d: every bootstrap and data blob in it.
//   unbind(d, b)  b a bootstrap of d: drops it and releases its data blobs
//                 (a blob goes when its last bootstrap goes); b a data blob:
//                 releases one reference, as the reference nydusd does.
//                 Unknown is kNotFound. An empty d means "the domain named by
//                 b" (an entry bound without a domain_id).
//   list()        the bound bootstrap entries, in bind order, as given.
//   lookup(d, c)  what an OPEN of cookie c in domain d serves, or null.
//
// Objects already opened by the kernel keep their source alive (shared_ptr)
// after an unbind, so in-flight and later READs of a mounted image still
// work; only new OPENs see the change.
//
// Difference from the reference (documented choice): an entry with an empty
// domain_id is served in the domain named by its id, which is what the kernel
// asks for when mounted with fsid= only; the reference keys it by the id
// alone, which no OPEN can match.
//
// Thread safety: all methods may be called concurrently. bind() does its I/O
// (opening the bootstrap and the blobs' backends and caches) holding only
// bind_mu_, so OPEN lookups by the workers are never blocked behind it.
// Lock order: bind_mu_ before mu_.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "nydusd/fscache/blob_entry.h"
#include "nydusd/fscache/object_source.h"
#include "nydusd/rafs/bootstrap.h"

namespace nydus::fscache {

// Builds the source of one data blob (the seam tests use to avoid real
// backends). The default is BlobRangeSource::open.
using DataBlobFactory = std::function<Result<std::shared_ptr<ObjectSource>>(
    const BlobEntry& entry, std::shared_ptr<const rafs::Bootstrap> bootstrap, const rafs::BlobInfo& blob)>;

DataBlobFactory default_data_blob_factory();

struct LookupResult {
  std::shared_ptr<ObjectSource> source;
  bool is_bootstrap = false;
};

class BlobRegistry {
 public:
  explicit BlobRegistry(DataBlobFactory make_data_blob = default_data_blob_factory());
  BlobRegistry(const BlobRegistry&) = delete;
  BlobRegistry& operator=(const BlobRegistry&) = delete;

  // PUT /api/v2/blobs. Validates paths (check_blob_entry_paths) first.
  Status bind(const BlobEntry& entry);
  // Convenience for callers without JSON: a localfs bootstrap entry.
  Status bind(const std::string& domain_id, const std::string& id, const std::string& bootstrap_path,
              const std::string& blob_dir, const std::string& cache_type, const std::string& work_dir);

  // DELETE /api/v2/blobs?domain_id=&blob_id=
  Status unbind(std::string_view domain_id, std::optional<std::string_view> blob_id = std::nullopt);

  // GET /api/v2/blobs, and the entries saved for failover.
  std::vector<BlobEntry> list() const;
  std::vector<BlobEntry> list(std::string_view domain_id) const;

  LookupResult lookup(std::string_view domain, std::string_view cookie) const;

  // Counts, for tests and metrics.
  size_t bootstrap_count() const;
  size_t data_blob_count() const;

 private:
  struct BootstrapRec {
    BlobEntry entry;
    std::shared_ptr<BootstrapSource> source;
    std::vector<std::string> blob_ids;  // data blobs it references (unique)
    uint64_t seq = 0;                   // bind order
  };
  struct DataBlobRec {
    std::shared_ptr<ObjectSource> source;
    uint32_t refs = 0;
  };
  struct Domain {
    std::map<std::string, BootstrapRec, std::less<>> bootstraps;
    std::map<std::string, DataBlobRec, std::less<>> blobs;
  };

  // Releases one reference of each blob; drops the domain when empty.
  void release_blobs_locked(Domain& d, const std::vector<std::string>& blob_ids);
  void drop_empty_locked(const std::string& domain);

  const DataBlobFactory make_data_blob_;
  std::mutex bind_mu_;  // serializes bind/unbind (held across bind's I/O)
  mutable std::mutex mu_;
  std::map<std::string, Domain, std::less<>> domains_;  // guarded by mu_
  uint64_t next_seq_ = 0;                               // guarded by mu_
};

}  // namespace nydus::fscache
