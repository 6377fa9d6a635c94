// nydus-image: builds, merges, checks, inspects and exports RAFS v6 images.
// Command-line compatible with the reference tool for the options it
// implements; each subcommand is a thin shell over nydus_builder.
#include <clocale>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "common/version.h"
#include "tools/nydus-image/check.h"
#include "tools/nydus-image/create.h"
#include "tools/nydus-image/export_block.h"
#include "tools/nydus-image/inspect.h"
#include "tools/nydus-image/merge.h"

namespace {

using nydus::Result;
using nydus::Status;
using nydus::rafs::Compressor;
using nydus::rafs::Digester;
namespace builder = nydus::builder;


std::string version_text() {
  const auto& b = nydus::build_info();
  return "Version:    \t" + b.version + "\nGit Commit: \t" + b.git_commit + "\nProfile:    \t" + b.profile;
}

Result<uint32_t> parse_chunk_size(const std::string& text) {
  try {
    size_t used = 0;
    unsigned long long v = std::stoull(text, &used, 0);  // base 0: "0x100000" or "1048576"
    if (used != text.size() || v > UINT32_MAX) throw std::invalid_argument(text);
    return uint32_t(v);
  } catch (const std::exception&) {
    return nydus::make_error(nydus::ErrorKind::kInvalidArgument, "bad chunk size '{}'", text);
  }
}

Status write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path, std::ios::trunc);
  out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out.close();
  if (!out) return nydus::make_error(nydus::ErrorKind::kIo, "cannot write {}", path);
  return nydus::ok_status();
}

int report(const Status& st) {
  if (st.ok()) return 0;
  std::fprintf(stderr, "nydus-image: error: %s\n", st.error().message().c_str());
  return 1;
}

struct CreateArgs {
  std::string type = "dir-rafs";
  std::string compressor = "zstd";
  std::string digester = "blake3";
  std::string chunk_size = "0x100000";
  unsigned fs_version = 6;
  std::string whiteout_spec;
  std::string json_out;
  builder::CreateOptions opts;
};

void add_create(CLI::App& app, CreateArgs& a) {
  auto* c = app.add_subcommand("create", "Build a RAFS v6 bootstrap and one data blob from a directory or an OCI layer tar");
  c->add_option("-t,--type", a.type,
                "Source type: dir-rafs (a directory) or tar-rafs (an OCI layer tar, plain or gzip; targz-rafs is an alias)")
      ->capture_default_str();
  c->add_option("-B,--bootstrap", a.opts.bootstrap, "Output bootstrap file")->required();
  c->add_option("-D,--blob-dir", a.opts.blob_dir,
                "Directory for the data blob (created if missing), named by the SHA-256 of its bytes; no blob when "
                "there is no file data")
      ->required();
  c->add_option("-c,--compressor", a.compressor, "Chunk compressor: none, lz4_block, zstd")->capture_default_str();
  c->add_option("--digester", a.digester, "Chunk digest: blake3, sha256")->capture_default_str();
  c->add_option("-S,--chunk-size", a.chunk_size, "Chunk size, a power of two from 0x1000 to 0x1000000 (hex or decimal)")
      ->capture_default_str();
  c->add_option("--fs-version", a.fs_version, "RAFS version; only 6 is supported")->capture_default_str();
  c->add_option("--whiteout-spec", a.whiteout_spec,
                "Layer deletion markers in the SOURCE: oci (.wh.NAME and .wh..wh..opq become overlayfs whiteouts, "
                "char 0:0, and trusted.overlay.opaque=y), overlayfs (already in that form: kept), none (no markers: "
                "every entry kept as is). Default: oci for tar-rafs, none for dir-rafs");
  c->add_option("--threads", a.opts.threads, "Compression threads (0 = one per CPU)")->capture_default_str();
  c->add_option("-J,--output-json", a.json_out, "Write {\"blobs\": [BLOB_ID...]} and build statistics as JSON");
  c->add_option("SOURCE", a.opts.source, "Source directory or tar file")->required();
}

Status do_create(CreateArgs& a) {
  if (a.fs_version != 6) return nydus::make_error(nydus::ErrorKind::kUnsupported, "only --fs-version 6 is supported");
  if (a.type == "dir-rafs" || a.type == "directory") {
    a.opts.source_type = builder::SourceType::kDirectory;
  } else if (a.type == "tar-rafs" || a.type == "targz-rafs") {
    a.opts.source_type = builder::SourceType::kTar;
  } else {
    return nydus::make_error(nydus::ErrorKind::kInvalidArgument, "unsupported --type '{}'", a.type);
  }
  static const std::map<std::string, Compressor> kCompressors = {
      {"none", Compressor::kNone}, {"lz4_block", Compressor::kLz4Block}, {"zstd", Compressor::kZstd}};
  auto c = kCompressors.find(a.compressor);
  if (c == kCompressors.end())
    return nydus::make_error(nydus::ErrorKind::kInvalidArgument, "unsupported compressor '{}'", a.compressor);
  a.opts.compressor = c->second;
  if (a.digester == "blake3") {
    a.opts.digester = Digester::kBlake3;
  } else if (a.digester == "sha256") {
    a.opts.digester = Digester::kSha256;
  } else {
    return nydus::make_error(nydus::ErrorKind::kInvalidArgument, "unsupported digester '{}'", a.digester);
  }
  NYDUS_ASSIGN_OR_RETURN(a.opts.chunk_size, parse_chunk_size(a.chunk_size));
  if (!a.whiteout_spec.empty()) {
    NYDUS_ASSIGN_OR_RETURN(a.opts.whiteout_spec, builder::parse_whiteout_spec(a.whiteout_spec));
  }
  std::error_code ec;
  std::filesystem::create_directories(a.opts.blob_dir, ec);
  if (ec) return nydus::make_error(nydus::ErrorKind::kIo, "create blob dir {}: {}", a.opts.blob_dir, ec.message());
  NYDUS_ASSIGN_OR_RETURN(auto r, builder::run_create(a.opts));
  spdlog::info("bootstrap {} ({} bytes, {} inodes)", a.opts.bootstrap, r.bootstrap_size, r.inodes);
  if (r.blob_id) {
    spdlog::info("blob {}/{} ({} bytes, {} chunks)", a.opts.blob_dir, *r.blob_id, r.blob_size, r.chunks);
  } else {
    spdlog::info("no file data: no blob written");
  }
  if (!a.json_out.empty()) {
    nlohmann::json j = {{"blobs", nlohmann::json::array()}, {"bootstrap", a.opts.bootstrap}, {"inodes", r.inodes},
                        {"chunks", r.chunks}, {"blob_size", r.blob_size}};
    if (r.blob_id) j["blobs"].push_back(*r.blob_id);
    NYDUS_TRY(write_json(a.json_out, j));
  }
  return nydus::ok_status();
}

struct MergeArgs {
  builder::MergeOptions opts;
  std::string blob_dir;
};

void add_merge(CLI::App& app, MergeArgs& a) {
  auto* m = app.add_subcommand(
      "merge",
      "Stack layer bootstraps (lowest first) into one image: upper entries win, whiteouts (char 0:0 or .wh.NAME) "
      "delete, opaque directories (trusted.overlay.opaque=y or .wh..wh..opq) hide lower entries; the markers are "
      "dropped and every layer's blob stays referenced");
  m->add_option("-B,--bootstrap", a.opts.bootstrap, "Output bootstrap file")->required();
  m->add_option("-D,--blob-dir", a.blob_dir, "When given, check that every referenced blob is in this directory");
  m->add_option("SOURCES", a.opts.sources, "Layer bootstraps, lowest first")->required()->check(CLI::ExistingFile);
}

Status do_merge(MergeArgs& a) {
  if (!a.blob_dir.empty()) a.opts.blob_dir = a.blob_dir;
  NYDUS_ASSIGN_OR_RETURN(auto r, builder::run_merge(a.opts));
  spdlog::info("merged {} layers into {} ({} bytes, {} blobs, {} chunks)", a.opts.sources.size(), a.opts.bootstrap,
               r.bootstrap_size, r.blobs, r.chunks);
  return nydus::ok_status();
}

struct CheckArgs {
  builder::CheckOptions opts;
  std::string blob_dir;
  std::string json_out;
};

void add_check(CLI::App& app, CheckArgs& a) {
  auto* c = app.add_subcommand("check", "Validate a bootstrap (every reachable inode, directory, xattr and chunk index) "
                                        "and, with --blob-dir, read and verify every file's data");
  c->add_option("-B,--bootstrap", a.opts.bootstrap, "Bootstrap to check")->required()->check(CLI::ExistingFile);
  c->add_option("-D,--blob-dir", a.blob_dir, "Directory holding the blobs; enables content digests");
  c->add_option("-J,--output-json", a.json_out,
                "Write every path with type, nid, mode (permission bits), uid, gid, size, nlink, mtime, mtime_nsec, "
                "rdev_major/minor, symlink target, xattrs (hex values) and, with -D, the SHA-256 of the content; paths "
                "that are not UTF-8 also appear as path_hex");
  c->add_flag("-v,--verbose", a.opts.verbose, "Print every path");
}

Status do_check(CheckArgs& a) {
  if (!a.blob_dir.empty()) a.opts.blob_dir = a.blob_dir;
  NYDUS_ASSIGN_OR_RETURN(auto j, builder::run_check(a.opts));
  std::map<std::string, size_t> by_type;
  uint64_t file_bytes = 0;
  for (const auto& f : j["files"]) {
    ++by_type[f["type"].get<std::string>()];
    if (f["type"] == "file") file_bytes += f["size"].get<uint64_t>();
  }
  std::string types;
  for (const auto& [t, n] : by_type) types += fmt::format("{}{} {}", types.empty() ? "" : ", ", n, t);
  std::printf("%s: OK: %zu paths (%s), %llu bytes of file data, %zu blobs%s\n", a.opts.bootstrap.c_str(),
              j["files"].size(), types.c_str(), static_cast<unsigned long long>(file_bytes), j["blobs"].size(),
              a.opts.blob_dir ? ", all chunks read and verified" : "");
  if (!a.json_out.empty()) NYDUS_TRY(write_json(a.json_out, j));
  return nydus::ok_status();
}

struct InspectArgs {
  std::string bootstrap;
  std::string path;
};

void add_inspect(CLI::App& app, InspectArgs& a) {
  auto* i = app.add_subcommand("inspect", "Print the superblock, extended superblock, device slots and blob table; "
                                          "with --path also the file's attributes and chunk map");
  i->add_option("-B,--bootstrap", a.bootstrap, "Bootstrap to inspect")->required()->check(CLI::ExistingFile);
  i->add_option("--path", a.path, "A path inside the image, e.g. /usr/bin/sh");
}

Status do_inspect(InspectArgs& a) {
  std::optional<std::string> path;
  if (!a.path.empty()) path = a.path;
  NYDUS_ASSIGN_OR_RETURN(auto text, builder::run_inspect(a.bootstrap, path));
  std::fputs(text.c_str(), stdout);
  return nydus::ok_status();
}

struct ExportArgs {
  bool block = false;
  std::string bootstrap;
  std::string blob_dir;
  std::string output;
};

void add_export(CLI::App& app, ExportArgs& a) {
  auto* e = app.add_subcommand("export", "Export an image as one uncompressed EROFS file the kernel mounts directly "
                                         "(mount(2) with type erofs and no options; not mount(8), which loops it)");
  e->add_flag("--block", a.block, "Export as a flat block image (the only format implemented)");
  e->add_option("-B,--bootstrap", a.bootstrap, "Bootstrap to export")->required()->check(CLI::ExistingFile);
  e->add_option("-D,--blob-dir", a.blob_dir, "Directory holding the blobs")->required()->check(CLI::ExistingDirectory);
  e->add_option("-O,--output", a.output, "Output image file")->required();
}

Status do_export(ExportArgs& a) {
  if (!a.block) return nydus::make_error(nydus::ErrorKind::kInvalidArgument, "export needs --block");
  NYDUS_ASSIGN_OR_RETURN(auto r, builder::export_block(a.bootstrap, a.blob_dir, a.output));
  spdlog::info("exported {} ({} bytes, {} blobs)", a.output, r.size, r.blobs);
  return nydus::ok_status();
}

}  // namespace

int main(int argc, char** argv) {
  // libarchive converts PAX (UTF-8) names through the locale; a UTF-8
  // locale keeps non-ASCII names intact.
  if (!std::setlocale(LC_CTYPE, "C.UTF-8")) std::setlocale(LC_CTYPE, "");

  CLI::App app{"nydus-image: build, merge, check, inspect and export RAFS v6 (EROFS-compatible) images"};
  app.set_version_flag("-V,--version", version_text());
  app.require_subcommand(1);
  app.fallthrough();  // `nydus-image create ... -l debug` works as well as `nydus-image -l debug create ...`
  std::string log_level = "info";
  app.add_option("-l,--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();

  CreateArgs create;
  MergeArgs merge;
  CheckArgs check;
  InspectArgs inspect;
  ExportArgs exp;
  add_create(app, create);
  add_merge(app, merge);
  add_check(app, check);
  add_inspect(app, inspect);
  add_export(app, exp);
  CLI11_PARSE(app, argc, argv);

  auto level = nydus::parse_log_level(log_level);
  if (!level.ok()) return report(std::move(level).error());
  if (auto st = nydus::init_logging("nydus-image", *level); !st.ok()) return report(st);

  const auto* sub = app.get_subcommands().front();
  const std::string name = sub->get_name();
  if (name == "create") return report(do_create(create));
  if (name == "merge") return report(do_merge(merge));
  if (name == "check") return report(do_check(check));
  if (name == "inspect") return report(do_inspect(inspect));
  if (name == "export") return report(do_export(exp));
  return 2;
}
