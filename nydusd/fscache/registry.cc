#include "nydusd/fscache/registry.h"

#include <algorithm>
#include <set>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "nydusd/fscache/blob_range.h"

namespace nydus::fscache {

DataBlobFactory default_data_blob_factory() {
  return [](const BlobEntry& entry, std::shared_ptr<const rafs::Bootstrap> bootstrap,
            const rafs::BlobInfo& blob) -> Result<std::shared_ptr<ObjectSource>> {
    NYDUS_ASSIGN_OR_RETURN(auto source, BlobRangeSource::open(entry.storage, entry.work_dir, std::move(bootstrap), blob));
    return std::shared_ptr<ObjectSource>(std::move(source));
  };
}

BlobRegistry::BlobRegistry(DataBlobFactory make_data_blob) : make_data_blob_(std::move(make_data_blob)) {}

Status BlobRegistry::bind(const std::string& domain_id, const std::string& id, const std::string& bootstrap_path,
                          const std::string& blob_dir, const std::string& cache_type, const std::string& work_dir) {
  NYDUS_ASSIGN_OR_RETURN(BlobEntry entry,
                         make_bootstrap_entry(id, domain_id, bootstrap_path, blob_dir, cache_type, work_dir));
  return bind(entry);
}

Status BlobRegistry::bind(const BlobEntry& entry) {
  std::lock_guard bind_lock(bind_mu_);
  const std::string domain = entry.effective_domain();
  auto fail = [&](Error e) { return std::move(e).wrap(fmt::format("bind {} in domain {}", entry.id, domain)); };

  auto conflict = [&]() -> Status {
    std::lock_guard lock(mu_);
    auto it = domains_.find(domain);
    if (it == domains_.end()) return ok_status();
    if (it->second.bootstraps.count(entry.id)) {
      return make_error(ErrorKind::kAlreadyExists, "bootstrap {} is already bound in domain {}", entry.id, domain);
    }
    if (it->second.blobs.count(entry.id)) {
      return make_error(ErrorKind::kAlreadyExists, "id {} is already a data blob of domain {}", entry.id, domain);
    }
    return ok_status();
  };
  NYDUS_TRY(conflict());
  if (Status st = check_blob_entry_paths(entry); !st.ok()) return fail(std::move(st).error());

  auto bootstrap = rafs::Bootstrap::open(entry.metadata_path);
  if (!bootstrap.ok()) return fail(std::move(bootstrap).error());
  auto bsource = BootstrapSource::open(entry.id, entry.metadata_path);
  if (!bsource.ok()) return fail(std::move(bsource).error());

  // The bootstrap's data blobs, unique, in table order.
  std::vector<const rafs::BlobInfo*> blobs;
  std::set<std::string> seen;
  for (const auto& b : (*bootstrap)->blobs()) {
    if (b.blob_id == entry.id) {
      return fail(make_error(ErrorKind::kInvalidArgument, "the id equals the id of its data blob {}", b.blob_id));
    }
    NYDUS_TRY(check_id("blob id", b.blob_id, false));
    if (seen.insert(b.blob_id).second) blobs.push_back(&b);
  }

  // Blobs the domain does not have yet get a source now; nothing is
  // registered until all of them opened (all or nothing).
  std::vector<std::pair<std::string, std::shared_ptr<ObjectSource>>> created;
  {
    std::vector<const rafs::BlobInfo*> missing;
    {
      std::lock_guard lock(mu_);
      auto it = domains_.find(domain);
      for (const auto* b : blobs) {
        if (it != domains_.end() && it->second.bootstraps.count(b->blob_id)) {
          return fail(make_error(ErrorKind::kAlreadyExists, "data blob {} is a bootstrap id of the domain", b->blob_id));
        }
        const DataBlobRec* known = nullptr;
        if (it != domains_.end()) {
          if (auto f = it->second.blobs.find(b->blob_id); f != it->second.blobs.end()) known = &f->second;
        }
        if (!known) {
          missing.push_back(b);
        } else if (known->source->size() != b->uncompressed_size) {
          // One cookie, one object: the kernel shares it across the domain,
          // so every bootstrap must describe the same blob.
          return fail(make_error(ErrorKind::kCorrupt,
                                 "data blob {} has uncompressed size {} here but {} in the domain already",
                                 b->blob_id, b->uncompressed_size, known->source->size()));
        }
      }
    }
    for (const auto* b : missing) {
      auto src = make_data_blob_(entry, *bootstrap, *b);
      if (!src.ok()) return fail(std::move(src).error().wrap(fmt::format("data blob {}", b->blob_id)));
      created.emplace_back(b->blob_id, std::move(src).value());
    }
  }

  std::lock_guard lock(mu_);
  Domain& d = domains_[domain];
  for (auto& [id, src] : created) d.blobs[id] = DataBlobRec{std::move(src), 0};
  BootstrapRec rec;
  rec.entry = entry;
  rec.source = std::move(bsource).value();
  for (const auto* b : blobs) {
    d.blobs[b->blob_id].refs++;
    rec.blob_ids.push_back(b->blob_id);
  }
  rec.seq = next_seq_++;
  d.bootstraps.emplace(entry.id, std::move(rec));
  spdlog::info("fscache: bound bootstrap {} ({}) in domain {} with {} data blob(s), cache {}", entry.id,
               entry.metadata_path, domain, blobs.size(), entry.cache_type.empty() ? "none" : entry.cache_type);
  return ok_status();
}

void BlobRegistry::release_blobs_locked(Domain& d, const std::vector<std::string>& blob_ids) {
  for (const auto& id : blob_ids) {
    auto it = d.blobs.find(id);
    if (it == d.blobs.end()) continue;
    if (it->second.refs <= 1) {
      d.blobs.erase(it);
    } else {
      it->second.refs--;
    }
  }
}

void BlobRegistry::drop_empty_locked(const std::string& domain) {
  auto it = domains_.find(domain);
  if (it != domains_.end() && it->second.bootstraps.empty() && it->second.blobs.empty()) domains_.erase(it);
}

Status BlobRegistry::unbind(std::string_view domain_id, std::optional<std::string_view> blob_id) {
  if (domain_id.empty() && (!blob_id || blob_id->empty())) {
    return make_error(ErrorKind::kInvalidArgument, "unbind needs a domain_id or a blob_id");
  }
  const std::string domain(domain_id.empty() ? *blob_id : domain_id);
  std::lock_guard bind_lock(bind_mu_);
  std::lock_guard lock(mu_);
  auto it = domains_.find(domain);
  if (it == domains_.end()) return make_error(ErrorKind::kNotFound, "no blobs are bound in domain {}", domain);
  if (!blob_id || blob_id->empty()) {
    spdlog::info("fscache: unbound domain {} ({} bootstrap(s), {} data blob(s))", domain,
                 it->second.bootstraps.size(), it->second.blobs.size());
    domains_.erase(it);
    return ok_status();
  }
  Domain& d = it->second;
  if (auto b = d.bootstraps.find(*blob_id); b != d.bootstraps.end()) {
    release_blobs_locked(d, b->second.blob_ids);
    d.bootstraps.erase(b);
    spdlog::info("fscache: unbound bootstrap {} from domain {}", *blob_id, domain);
    drop_empty_locked(domain);
    return ok_status();
  }
  if (auto b = d.blobs.find(*blob_id); b != d.blobs.end()) {
    // A data blob's references are its bootstraps; dropping it under them
    // would make their next OPEN fail. Unbind the bootstraps instead.
    std::vector<std::string> users;
    for (const auto& [id, rec] : d.bootstraps) {
      if (std::find(rec.blob_ids.begin(), rec.blob_ids.end(), *blob_id) != rec.blob_ids.end()) users.push_back(id);
    }
    return make_error(ErrorKind::kFailedPrecondition,
                      "data blob {} of domain {} is used by bootstrap(s) {}; unbind those instead", *blob_id,
                      domain, fmt::join(users, ", "));
  }
  return make_error(ErrorKind::kNotFound, "no blob {} in domain {}", *blob_id, domain);
}

std::vector<BlobEntry> BlobRegistry::list() const { return list(""); }

std::vector<BlobEntry> BlobRegistry::list(std::string_view domain_id) const {
  std::vector<const BootstrapRec*> recs;
  std::lock_guard lock(mu_);
  for (const auto& [name, d] : domains_) {
    if (!domain_id.empty() && name != domain_id) continue;
    for (const auto& [id, rec] : d.bootstraps) recs.push_back(&rec);
  }
  std::sort(recs.begin(), recs.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
  std::vector<BlobEntry> out;
  for (const auto* r : recs) out.push_back(r->entry);
  return out;
}

LookupResult BlobRegistry::lookup(std::string_view domain, std::string_view cookie) const {
  std::lock_guard lock(mu_);
  auto it = domains_.find(domain);
  if (it == domains_.end()) return {};
  if (auto b = it->second.bootstraps.find(cookie); b != it->second.bootstraps.end()) {
    return {b->second.source, true};
  }
  if (auto b = it->second.blobs.find(cookie); b != it->second.blobs.end()) return {b->second.source, false};
  return {};
}

size_t BlobRegistry::bootstrap_count() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [name, d] : domains_) n += d.bootstraps.size();
  return n;
}

size_t BlobRegistry::data_blob_count() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [name, d] : domains_) n += d.blobs.size();
  return n;
}

}  // namespace nydus::fscache
