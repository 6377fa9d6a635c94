// nydusctl: a command-line client of nydusd's control API (--sock) and of the
// snapshotter's system API (--system), both HTTP over unix sockets.
//
//   nydusctl --sock <api.sock> info
//   nydusctl --sock <api.sock> metrics [--kind fs|backend|blobcache|inflight] [--id ID]
//   nydusctl --sock <api.sock> set-log-level <trace|debug|info|warn|error>
//   nydusctl --system <system.sock> daemons
//   nydusctl --system <system.sock> records
//   nydusctl --system <system.sock> upgrade --nydusd-path P [--version V] [--policy P]
//
// Output is a human-readable table unless --json, which prints the server's
// JSON as received (pretty-printed). Exit status: 0 success, 1 the request
// failed (socket missing, server error, partial upgrade), 2 usage error.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/version.h"

namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
// An upgrade restarts every daemon one after another; give it time.
constexpr std::chrono::milliseconds kUpgradeTimeout = std::chrono::minutes(10);
constexpr std::chrono::milliseconds kRequestTimeout = std::chrono::seconds(30);

struct Options {
  std::string sock;
  std::string system;
  bool json_output = false;
  std::string kind = "fs";
  std::string id;
  std::string level;
  std::string nydusd_path;
  std::string version;
  std::string policy;
};

int fail(const std::string& message) {
  std::cerr << "nydusctl: " << message << "\n";
  return kExitFailed;
}

std::string dump(const json& j) {
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

// A scalar as a table cell; objects and arrays as compact JSON.
std::string cell(const json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) return j.get<std::string>().empty() ? "-" : j.get<std::string>();
  if (j.is_number_float()) return fmt::format("{:.1f}", j.get<double>());
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      // The last column is not padded, so long paths do not leave trailing blanks.
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}  ", row[i], width[i]);
    }
    std::cout << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

// key/value lines for a (nested) object: nested keys are joined with '.'.
void flatten(const json& j, const std::string& prefix,
             std::vector<std::vector<std::string>>& rows) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      flatten(value, prefix.empty() ? key : prefix + "." + key, rows);
    }
    return;
  }
  rows.push_back({prefix, cell(j)});
}

// A request whose socket is checked first, so "no such socket" reads as such
// and not as a generic connection failure.
struct Api {
  std::string path;
  nydus::HttpClient client;
  explicit Api(std::string socket) : path(socket), client(std::move(socket)) {}

  nydus::Result<nydus::HttpResponse> call(const std::string& method, const std::string& target,
                                          const std::string& body = {},
                                          std::chrono::milliseconds timeout = kRequestTimeout) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      return nydus::make_error(nydus::ErrorKind::kNotFound, "socket {} does not exist", path);
    }
    if (!S_ISSOCK(st.st_mode)) {
      return nydus::make_error(nydus::ErrorKind::kInvalidArgument, "{} is not a unix socket", path);
    }
    return client.request(method, target, body, timeout);
  }
};

// The error message of a non-2xx answer: the body's "message" if it has one.
std::string http_failure(const std::string& what, const nydus::HttpResponse& resp) {
  std::string detail = resp.body;
  json body = json::parse(resp.body, nullptr, false);
  if (body.is_object() && body.contains("message") && body["message"].is_string()) {
    detail = body["message"].get<std::string>();
  }
  return fmt::format("{}: HTTP {}: {}", what, resp.status, detail);
}

// Runs the request and hands a 2xx body (parsed, null if empty) to `render`.
template <typename Render>
int get_and_render(Api& api, const std::string& what, const std::string& target,
                   const Options& opt, Render render) {
  auto resp = api.call("GET", target);
  if (!resp.ok()) return fail(fmt::format("{}: {}", what, resp.error().message()));
  if (resp->status / 100 != 2) return fail(http_failure(what, *resp));
  json body = resp->body.empty() ? json(nullptr) : json::parse(resp->body, nullptr, false);
  if (body.is_discarded()) return fail(fmt::format("{}: the server sent malformed JSON", what));
  if (opt.json_output) {
    std::cout << dump(body) << "\n";
    return kExitOk;
  }
  render(body, resp->status);
  return kExitOk;
}

int cmd_info(Api& api, const Options& opt) {
  return get_and_render(api, "info", "/api/v1/daemon", opt, [](const json& d, int) {
    const json version = d.value("version", json::object());
    std::vector<std::vector<std::string>> rows = {
        {"id", cell(d.value("id", json()))},
        {"state", cell(d.value("state", json()))},
        {"version", cell(version.value("package_ver", json()))},
        {"git_commit", cell(version.value("git_commit", json()))},
        {"build_time", cell(version.value("build_time", json()))},
        {"supervisor", cell(d.value("supervisor", json()))},
    };
    print_table({"FIELD", "VALUE"}, rows);
    json mounts = d.value("backend_collection", json());
    if (mounts.is_object() && !mounts.empty()) {
      std::cout << "\n";
      std::vector<std::vector<std::string>> mrows;
      for (const auto& [mp, m] : mounts.items()) {
        mrows.push_back({mp, cell(m.value("backend_type", json()))});
      }
      print_table({"MOUNTPOINT", "TYPE"}, mrows);
    }
  });
}

int cmd_metrics(Api& api, const Options& opt) {
  std::string target;
  if (opt.kind == "fs") target = "/api/v1/metrics";
  else if (opt.kind == "backend") target = "/api/v1/metrics/backend";
  else if (opt.kind == "blobcache") target = "/api/v1/metrics/blobcache";
  else target = "/api/v1/metrics/inflight";  // CLI11 checked the set
  if (!opt.id.empty() && opt.kind != "inflight") target += "?id=" + nydus::url_encode(opt.id);
  return get_and_render(api, "metrics " + opt.kind, target, opt, [&](const json& m, int status) {
    if (opt.kind == "inflight") {
      // 204 (no body) when every FUSE worker is idle.
      if (status == 204 || !m.is_array() || m.empty()) {
        std::cout << "no requests in flight\n";
        return;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& r : m) {
        rows.push_back({cell(r.value("unique", json())), cell(r.value("opcode", json())),
                        cell(r.value("inode", json())), cell(r.value("timestamp_secs", json()))});
      }
      print_table({"UNIQUE", "OPCODE", "INODE", "SINCE"}, rows);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    flatten(m, "", rows);
    print_table({"METRIC", "VALUE"}, rows);
  });
}

int cmd_set_log_level(Api& api, const Options& opt) {
  json body = {{"log_level", opt.level}};
  auto resp = api.call("PUT", "/api/v1/daemon", body.dump());
  if (!resp.ok()) return fail("set-log-level: " + resp.error().message());
  if (resp->status / 100 != 2) return fail(http_failure("set-log-level", *resp));
  if (!opt.json_output) std::cout << "log level set to " << opt.level << "\n";
  return kExitOk;
}

int cmd_daemons(Api& api, const Options& opt) {
  return get_and_render(api, "daemons", "/api/v1/daemons", opt, [](const json& list, int) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : list) {
      std::string mounts;
      for (const auto& m : d.value("mountpoints", json::array())) {
        if (!mounts.empty()) mounts += ",";
        mounts += m.is_string() ? m.get<std::string>() : m.dump();
      }
      rows.push_back({cell(d.value("id", json())), cell(d.value("pid", json())),
                      cell(d.value("state", json())), cell(d.value("fs_driver", json())),
                      cell(d.value("recovery_count", json())),
                      cell(d.value("last_failover_ms", json())),
                      cell(d.value("last_upgrade_ms", json())), cell(d.value("version", json())),
                      cell(d.value("binary_path", json())), mounts.empty() ? "-" : mounts});
    }
    print_table({"ID", "PID", "STATE", "DRIVER", "RECOVERIES", "FAILOVER_MS", "UPGRADE_MS",
                 "VERSION", "BINARY", "MOUNTPOINTS"},
                rows);
  });
}

int cmd_records(Api& api, const Options& opt) {
  // Records are the store's raw JSON, without a fixed schema: always JSON.
  return get_and_render(api, "records", "/api/v1/daemons/records", opt,
                        [](const json& r, int) { std::cout << dump(r) << "\n"; });
}

int cmd_upgrade(Api& api, const Options& opt) {
  json body = {{"nydusd_path", opt.nydusd_path}};
  if (!opt.version.empty()) body["version"] = opt.version;
  if (!opt.policy.empty()) body["policy"] = opt.policy;
  auto resp = api.call("PUT", "/api/v1/daemons/upgrade", body.dump(), kUpgradeTimeout);
  if (!resp.ok()) return fail("upgrade: " + resp.error().message());
  json answer = json::parse(resp->body, nullptr, false);
  bool ok = resp->status / 100 == 2;
  if (opt.json_output) {
    std::cout << (answer.is_discarded() ? resp->body : dump(answer)) << "\n";
  } else if (answer.is_object() && answer.contains("daemons")) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : answer["daemons"]) {
      rows.push_back({cell(d.value("id", json())), d.value("ok", false) ? "ok" : "FAILED",
                      cell(d.value("old_pid", json())), cell(d.value("new_pid", json())),
                      cell(d.value("switch_ms", json())), cell(d.value("error", json()))});
    }
    print_table({"ID", "RESULT", "OLD_PID", "NEW_PID", "SWITCH_MS", "ERROR"}, rows);
    if (answer.contains("message")) std::cout << cell(answer["message"]) << "\n";
  }
  if (!ok) return fail(http_failure("upgrade", *resp));
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "nydusctl: query and control nydusd (--sock, its API socket) and the nydus snapshotter "
      "(--system, its system.sock).\nExit status: 0 ok, 1 the request failed, 2 usage error."};
  app.set_version_flag("--version", nydus::build_info().version + " (" + nydus::build_info().git_commit + ")");
  app.require_subcommand(1);
  // Global options may also follow the subcommand (`nydusctl info --sock S`).
  app.fallthrough();
  auto* sock_opt = app.add_option("--sock", opt.sock, "nydusd API socket (for info, metrics, set-log-level)");
  auto* system_opt = app.add_option("--system", opt.system,
                                    "snapshotter system socket, e.g. /run/containerd-nydus/system.sock "
                                    "(for daemons, records, upgrade)");
  app.add_flag("--json", opt.json_output, "print the server's JSON instead of a table");

  auto* info = app.add_subcommand("info", "nydusd: id, state, version, supervisor and mounts (GET /api/v1/daemon)");
  auto* metrics = app.add_subcommand("metrics", "nydusd: I/O metrics (GET /api/v1/metrics[/backend|/blobcache|/inflight])");
  metrics->add_option("--kind", opt.kind, "fs (default), backend, blobcache or inflight")
      ->check(CLI::IsMember({"fs", "backend", "blobcache", "inflight"}));
  metrics->add_option("--id", opt.id, "mountpoint id, needed when nydusd serves several file systems");
  auto* set_level = app.add_subcommand("set-log-level", "nydusd: change the log level (PUT /api/v1/daemon)");
  set_level->add_option("level", opt.level, "trace, debug, info, warn or error")
      ->required()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  auto* daemons = app.add_subcommand("daemons", "snapshotter: list nydusd daemons (GET /api/v1/daemons)");
  auto* records = app.add_subcommand("records", "snapshotter: raw daemon records as JSON (GET /api/v1/daemons/records)");
  auto* upgrade = app.add_subcommand(
      "upgrade", "snapshotter: hot-upgrade every nydusd to a new binary (PUT /api/v1/daemons/upgrade); "
                 "exits 1 if any daemon failed");
  upgrade->add_option("--nydusd-path", opt.nydusd_path, "absolute path of the new nydusd binary")->required();
  upgrade->add_option("--version", opt.version, "version label of the new binary (informational)");
  upgrade->add_option("--policy", opt.policy, "upgrade policy (default: rolling)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  bool wants_daemon = info->parsed() || metrics->parsed() || set_level->parsed();
  if (wants_daemon && sock_opt->count() == 0) {
    std::cerr << "nydusctl: this command talks to nydusd: give --sock <api.sock>\n";
    return kExitUsage;
  }
  if (!wants_daemon && system_opt->count() == 0) {
    std::cerr << "nydusctl: this command talks to the snapshotter: give --system <system.sock>\n";
    return kExitUsage;
  }

  Api api(wants_daemon ? opt.sock : opt.system);
  if (info->parsed()) return cmd_info(api, opt);
  if (metrics->parsed()) return cmd_metrics(api, opt);
  if (set_level->parsed()) return cmd_set_log_level(api, opt);
  if (daemons->parsed()) return cmd_daemons(api, opt);
  if (records->parsed()) return cmd_records(api, opt);
  if (upgrade->parsed()) return cmd_upgrade(api, opt);
  return kExitUsage;
}
