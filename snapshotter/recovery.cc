#include "snapshotter/recovery.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "common/mount.h"
#include "snapshotter/supervisor.h"

namespace nydus::snapshotter {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

// How long a standby or a failed successor may take to die after SIGKILL.
constexpr std::chrono::milliseconds kKillWait{5000};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string standby_pid_file(const std::string& api_socket) {
  return (fs::path(api_socket).parent_path() / "standby.pid").string();
}

// Waits for `pidfd` to become readable (the process exited), at most `timeout`.
bool wait_exit(int pidfd, std::chrono::milliseconds timeout) {
  if (pidfd < 0) return true;
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

// The fusectl connection id of the FUSE mount at `mountpoint`, read from
// /proc/self/mountinfo: a stat() of a mount whose daemon is gone would hang.
std::optional<std::string> fuse_connection_id(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::optional<std::string> found;
  for (std::string line; std::getline(in, line);) {
    // id parent major:minor root mountpoint ...
    std::istringstream fields(line);
    std::string id, parent, devno, root, mp;
    fields >> id >> parent >> devno >> root >> mp;
    if (mp != mountpoint) continue;
    if (line.find(" - fuse") == std::string::npos) continue;
    auto colon = devno.find(':');
    if (colon == std::string::npos) continue;
    unsigned long major = std::stoul(devno.substr(0, colon));
    unsigned long minor = std::stoul(devno.substr(colon + 1));
    found = std::to_string((major << 20) | minor);  // the last (top) mount wins
  }
  return found;
}

}  // namespace

RecoveryOptions RecoveryOptions::from_config(const DaemonConfig& c) {
  RecoveryOptions o;
  o.policy = c.recover_policy;
  o.hot_standby = c.hot_standby;
  o.crash_loop_limit = c.crash_loop_limit;
  o.crash_loop_window = std::chrono::seconds(c.crash_loop_window_secs);
  o.backoff_initial = std::chrono::milliseconds(c.recover_backoff_ms);
  o.backoff_max = std::chrono::milliseconds(c.recover_backoff_max_ms);
  o.failed_abort_connection = c.failed_abort_connection;
  return o;
}

std::string next_api_socket(const std::string& current) {
  fs::path p(current);
  std::string name = p.filename().string();
  unsigned n = 0;
  if (name.rfind("api", 0) == 0 && name.size() > 8 && name.substr(name.size() - 5) == ".sock") {
    std::string digits = name.substr(3, name.size() - 8);
    if (!digits.empty() && std::all_of(digits.begin(), digits.end(), ::isdigit)) n = std::stoul(digits);
  }
  return (p.parent_path() / fmt::format("api{}.sock", n + 1)).string();
}

std::chrono::milliseconds recovery_backoff(int n, std::chrono::milliseconds initial, std::chrono::milliseconds max) {
  if (n <= 1) return std::chrono::milliseconds(0);
  auto delay = initial;
  for (int i = 2; i < n && delay < max; ++i) delay *= 2;
  return std::min(delay, max);
}

// ---------------------------------------------------------------------------

RecoveryController::RecoveryController(DaemonManager& manager, RecoveryOptions options)
    : manager_(manager), options_(options) {
  worker_ = std::thread([this] { run(); });
  for (const auto& d : manager_.daemons()) {
    reap_stale_standby(d->record());
    if (d->state() == kStateRunning) on_daemon_running(*d);
  }
  manager_.set_death_handler(this);
  // A death between the manager's start and this registration found no
  // handler: pick it up now (a failover only has something to take over
  // when the supervisor holds a state).
  for (const auto& d : manager_.daemons()) {
    if (d->state() != kStateDied) continue;
    auto* sup = manager_.supervisors();
    if (options_.policy == RecoverPolicy::kFailover && !(sup && sup->has_state(d->id()))) continue;
    if (options_.policy == RecoverPolicy::kNone) continue;
    schedule_recovery(d->id());
  }
}

RecoveryController::~RecoveryController() { stop(); }

void RecoveryController::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  manager_.set_death_handler(nullptr);
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::map<std::string, Standby> standbys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    standbys.swap(standbys_);
  }
  for (auto& [id, s] : standbys) {
    end_process(s.process);
    ::unlink(s.client->api_socket().c_str());
    ::unlink(standby_pid_file(s.client->api_socket()).c_str());
  }
}

void RecoveryController::enqueue(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void RecoveryController::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (stopping_) return;
    if (jobs_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto next = std::min_element(jobs_.begin(), jobs_.end(), [](const Job& a, const Job& b) { return a.due < b.due; });
    if (next->due > Clock::now()) {
      cv_.wait_until(lock, next->due);
      continue;
    }
    Job job = *next;
    jobs_.erase(next);
    busy_ = true;
    lock.unlock();
    try {
      if (job.kind == Job::Kind::kRecover) {
        recover(job.id, job.attempt);
      } else {
        prepare_standby(job.id);
      }
    } catch (const std::exception& e) {
      spdlog::error("recovery of nydusd {}: {}", job.id, e.what());
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

bool RecoveryController::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return jobs_.empty() && !busy_; });
}

int RecoveryController::note_attempt(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& attempts = stats_[id].attempts;
  auto now = Clock::now();
  while (!attempts.empty() && now - attempts.front() > options_.crash_loop_window) attempts.pop_front();
  attempts.push_back(now);
  return static_cast<int>(attempts.size());
}

// ---------------------------------------------------------------------------
// Deaths

void RecoveryController::on_daemon_death(Daemon& daemon) {
  // On the liveness monitor's thread: queue and return at once.
  schedule_recovery(daemon.id());
}

void RecoveryController::schedule_recovery(const std::string& id) {
  int n = note_attempt(id);
  auto delay = options_.policy == RecoverPolicy::kNone
                   ? std::chrono::milliseconds(0)
                   : recovery_backoff(n, options_.backoff_initial, options_.backoff_max);
  if (delay.count() > 0) spdlog::info("nydusd {}: recovery attempt {} after a back-off of {} ms", id, n, delay.count());
  // The back-off is the job's due time: nothing is held while it passes, so
  // an upgrade can step in meanwhile.
  enqueue(Job{Job::Kind::kRecover, id, Clock::now() + delay, n});
}

void RecoveryController::recover(const std::string& id, int attempt) {
  auto daemon = manager_.daemon(id);
  if (!daemon) return;
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  if (daemon->state() != kStateDied || daemon->stopping()) return;  // handled meanwhile (upgrade, stop)
  DaemonRecord r = daemon->record();
  SupervisorStore* sup = manager_.supervisors();

  if (options_.policy == RecoverPolicy::kNone) {
    spdlog::warn("nydusd {}: recover_policy none: the daemon stays dead; its mount {} fails with ENOTCONN until "
                 "its snapshots are removed",
                 id, r.mountpoint);
    discard_standby(id);
    if (sup) sup->drop_fd(id);
    return;
  }

  const int n = attempt;
  if (n > options_.crash_loop_limit) {
    discard_standby(id);
    daemon->set_state(kStateFailed);
    (void)manager_.persist(*daemon);
    if (options_.failed_abort_connection) {
      spdlog::error("nydusd {}: died {} times within {} s: marked FAILED; its FUSE connection is aborted "
                    "(daemon.failed_abort_connection), readers fail fast",
                    id, n - 1, options_.crash_loop_window.count());
      abort_connection(*daemon);
    } else {
      spdlog::error("nydusd {}: died {} times within {} s: marked FAILED and not recovered again; the FUSE "
                    "connection stays held (readers wait) until an upgrade to a good binary takes it over",
                    id, n - 1, options_.crash_loop_window.count());
    }
    return;
  }
  auto started = Clock::now();
  Status st;
  if (options_.policy == RecoverPolicy::kRestart) {
    // The old connection cannot be saved by a restart: let it go, so its
    // readers fail instead of hanging.
    discard_standby(id);
    if (sup) sup->drop_fd(id);
    st = manager_.restart_daemon(*daemon);
  } else {
    st = take_over(*daemon, manager_.nydusd_path(), manager_.binary_version(), options_.hot_standby);
  }
  double ms = ms_since(started);
  if (!st.ok()) {
    spdlog::error("nydusd {}: {} failed after {:.1f} ms: {}; retrying", id, to_string(options_.policy), ms,
                  st.error().message());
    daemon->set_state(kStateDied);
    (void)manager_.persist(*daemon);
    schedule_recovery(id);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& s = stats_[id];
    ++s.recoveries;
    if (options_.policy == RecoverPolicy::kFailover) s.last_failover_ms = ms;
  }
  spdlog::info("nydusd {}: {} done in {:.1f} ms, now pid {}", id, to_string(options_.policy), ms, daemon->pid());
  // The standby (if one was used) is now the serving daemon: prepare the
  // next one, or the following crash would be a cold failover.
  on_daemon_running(*daemon);
}

void RecoveryController::abort_connection(Daemon& daemon) {
  DaemonRecord r = daemon.record();
  if (auto* sup = manager_.supervisors()) sup->drop_fd(r.id);
  // Dropping the last fd aborts the connection; fusectl's abort covers a
  // copy somebody else might still hold.
  if (auto conn = fuse_connection_id(r.mountpoint)) {
    std::string path = "/sys/fs/fuse/connections/" + *conn + "/abort";
    std::ofstream out(path);
    out << "1";
    if (!out) spdlog::warn("nydusd {}: writing {} failed", r.id, path);
  }
}

// ---------------------------------------------------------------------------
// Takeover

void RecoveryController::end_process(Process& process) {
  if (process.pid() <= 0) return;
  (void)process.kill(SIGKILL);
  auto st = process.wait(kKillWait);
  if (!st.ok()) spdlog::warn("pid {} did not exit after SIGKILL: {}", process.pid(), st.error().message());
}

Result<RecoveryController::Successor> RecoveryController::start_successor(Daemon& daemon,
                                                                          const std::string& binary) {
  DaemonRecord r = daemon.record();
  std::string api = next_api_socket(r.api_socket);
  NYDUS_ASSIGN_OR_RETURN(Process process, manager_.spawn_successor(daemon, binary, api));
  Successor s{std::move(process), manager_.make_client(api)};
  auto info = wait_for_state(s.process.pidfd(), *s.client, r.log_file, kStateInit, kSuccessorStartTimeout);
  if (!info.ok()) {
    end_process(s.process);
    ::unlink(api.c_str());
    return std::move(info).error().wrap("waiting for the successor to report INIT");
  }
  return s;
}

Status RecoveryController::switch_to(Daemon& daemon, Successor successor, const std::string& binary,
                                     const std::string& version) {
  DaemonRecord r = daemon.record();
  SupervisorStore* sup = manager_.supervisors();
  std::string old_api = r.api_socket;
  (void)daemon.try_wait();  // reap the old process (our child) before its handle goes
  daemon.set_process(std::move(successor.process));
  daemon.replace_client(std::move(successor.client));
  daemon.set_binary(binary, version);
  daemon.set_state(kStateRunning);
  daemon.set_stopping(false);
  if (sup) sup->set_owner(r.id, daemon.pid());
  if (old_api != daemon.record().api_socket) ::unlink(old_api.c_str());
  NYDUS_TRY(manager_.watch(daemon));
  NYDUS_TRY(manager_.persist(daemon));
  // A fresh state from the new process (its own writer version).
  if (auto st = manager_.request_save(daemon); !st.ok()) {
    spdlog::warn("nydusd {}: saving the state of its successor: {}", r.id, st.error().message());
  }
  return ok_status();
}

Status RecoveryController::take_over(Daemon& daemon, const std::string& binary, const std::string& version,
                                     bool use_standby) {
  SupervisorStore* sup = manager_.supervisors();
  DaemonRecord r = daemon.record();
  if (!sup || !sup->has_state(r.id)) {
    return make_error(ErrorKind::kFailedPrecondition, "nydusd {}: the supervisor holds no saved state to take over",
                      r.id);
  }
  std::optional<Successor> successor;
  if (use_standby) {
    if (auto standby = take_standby(r.id)) {
      if (standby->binary == binary && !standby->process.exited()) {
        spdlog::info("nydusd {}: taking over with the hot standby pid {}", r.id, standby->process.pid());
        successor = Successor{std::move(standby->process), std::move(standby->client)};
      } else {
        end_process(standby->process);
      }
    }
  }
  if (!successor) {
    NYDUS_ASSIGN_OR_RETURN(auto s, start_successor(daemon, binary));
    successor = std::move(s);
  }
  pid_t pid = successor->process.pid();
  auto undo = [&](Error e) -> Status {
    sup->disarm(r.id);
    end_process(successor->process);
    ::unlink(successor->client->api_socket().c_str());
    return e;
  };
  NYDUS_TRY(sup->arm_takeover(r.id, pid));
  if (auto st = successor->client->takeover(); !st.ok()) return undo(std::move(st).error().wrap("takeover"));
  if (auto st = successor->client->start(); !st.ok()) return undo(std::move(st).error().wrap("start"));
  auto running = wait_for_state(successor->process.pidfd(), *successor->client, r.log_file, kStateRunning,
                                kSuccessorStartTimeout);
  if (!running.ok()) return undo(std::move(running).error());
  return switch_to(daemon, std::move(*successor), binary, version);
}

// ---------------------------------------------------------------------------
// Hot standby

void RecoveryController::on_daemon_running(Daemon& daemon) {
  if (options_.policy != RecoverPolicy::kFailover || !options_.hot_standby) return;
  enqueue(Job{Job::Kind::kStandby, daemon.id(), Clock::now(), 0});
}

void RecoveryController::on_daemon_stopping(Daemon& daemon) { discard_standby(daemon.id()); }

void RecoveryController::prepare_standby(const std::string& id) {
  auto daemon = manager_.daemon(id);
  if (!daemon) return;
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  if (daemon->state() != kStateRunning || daemon->stopping()) return;
  std::string binary = manager_.nydusd_path();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = standbys_.find(id);
    if (it != standbys_.end() && it->second.binary == binary && !it->second.process.exited()) return;
  }
  discard_standby(id);
  auto s = start_successor(*daemon, binary);
  if (!s.ok()) {
    spdlog::warn("nydusd {}: no hot standby: {}", id, s.error().message());
    return;
  }
  std::string api = s->client->api_socket();
  // Written down so that a restarted snapshotter can end it.
  std::ofstream(standby_pid_file(api)) << s->process.pid() << " " << api << "\n";
  spdlog::info("nydusd {}: hot standby pid {} waits in INIT on {}", id, s->process.pid(), api);
  std::lock_guard<std::mutex> lock(mu_);
  standbys_.insert_or_assign(id, Standby{std::move(s->process), std::move(s->client), binary, manager_.binary_version()});
}

std::optional<RecoveryController::Standby> RecoveryController::take_standby(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = standbys_.find(id);
  if (it == standbys_.end()) return std::nullopt;
  Standby s = std::move(it->second);
  standbys_.erase(it);
  ::unlink(standby_pid_file(s.client->api_socket()).c_str());
  return s;
}

void RecoveryController::discard_standby(const std::string& id) {
  auto s = take_standby(id);
  if (!s) return;
  end_process(s->process);
  ::unlink(s->client->api_socket().c_str());
}

std::optional<pid_t> RecoveryController::standby_pid(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = standbys_.find(id);
  if (it == standbys_.end()) return std::nullopt;
  return it->second.process.pid();
}

void RecoveryController::reap_stale_standby(const DaemonRecord& record) {
  std::string file = standby_pid_file(record.api_socket);
  std::ifstream in(file);
  pid_t pid = 0;
  std::string api;
  if (!(in >> pid >> api)) return;
  ::unlink(file.c_str());
  if (pid <= 0 || api == record.api_socket) return;
  auto cmdline = read_proc_cmdline(pid);
  if (!cmdline.ok() || !cmdline_serves_api_socket(*cmdline, api)) return;  // gone, or a recycled pid
  auto process = Process::adopt(pid);
  if (!process.ok()) return;
  spdlog::info("nydusd {}: ending the hot standby pid {} left by the previous snapshotter", record.id, pid);
  process->detach();
  (void)process->kill(SIGKILL);
  (void)process->wait(kKillWait);
  ::unlink(api.c_str());
}

// ---------------------------------------------------------------------------
// System API

std::vector<DaemonView> RecoveryController::daemons() {
  std::vector<DaemonView> out;
  auto instances = manager_.instances();
  for (const auto& d : manager_.daemons()) {
    DaemonRecord r = d->record();
    DaemonView v;
    v.id = r.id;
    v.pid = static_cast<int>(r.pid);
    v.state = r.state;
    v.api_socket = r.api_socket;
    v.supervisor = r.supervisor_path;
    for (const auto& inst : instances) {
      if (inst.daemon_id == r.id) v.mountpoints.push_back(inst.mountpoint);
    }
    if (v.mountpoints.empty() && !r.mountpoint.empty()) v.mountpoints.push_back(r.mountpoint);
    v.binary_path = r.binary_path;
    v.version = r.version;
    v.fs_driver = r.fs_driver;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = stats_.find(r.id); it != stats_.end()) {
      v.recovery_count = it->second.recoveries;
      v.last_failover_ms = it->second.last_failover_ms;
      v.last_upgrade_ms = it->second.last_upgrade_ms;
    }
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

json RecoveryController::daemon_records() {
  json out = json::array();
  auto records = manager_.daemon_records();
  if (!records.ok()) {
    spdlog::warn("system api: listing daemon records: {}", records.error().message());
    return out;
  }
  for (const auto& r : *records) {
    out.push_back({{"id", r.id},
                   {"pid", r.pid},
                   {"api_socket", r.api_socket},
                   {"supervisor_path", r.supervisor_path},
                   {"mountpoint", r.mountpoint},
                   {"daemon_mode", r.daemon_mode},
                   {"fs_driver", r.fs_driver},
                   {"binary_path", r.binary_path},
                   {"version", r.version},
                   {"state", r.state},
                   {"config_path", r.config_path},
                   {"log_file", r.log_file},
                   {"created", r.created},
                   {"updated", r.updated}});
  }
  return out;
}

Result<std::vector<DaemonUpgradeResult>> RecoveryController::upgrade(const UpgradeRequest& request) {
  std::unique_lock<std::mutex> serial(upgrade_mu_, std::try_to_lock);
  if (!serial.owns_lock()) return make_error(ErrorKind::kNotReady, "another upgrade is running; try again when it finished");
  if (!manager_.supervisors()) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "hot upgrade needs daemons with a supervisor (daemon.recover_policy = \"failover\")");
  }
  std::string version;
  if (auto v = manager_.probe_binary(request.nydusd_path); v.ok()) {
    version = v->display();
  } else {
    // Not fatal here: the per-daemon steps fail (and roll back) if the
    // binary cannot serve, and say so.
    spdlog::warn("upgrade: {} --version: {}", request.nydusd_path, v.error().message());
    version = "unknown";
  }
  spdlog::info("upgrade: every nydusd to {} ({})", request.nydusd_path, version);
  std::vector<DaemonUpgradeResult> results;
  auto daemons = manager_.daemons();
  std::sort(daemons.begin(), daemons.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  bool all_ok = true;
  for (const auto& d : daemons) {
    DaemonUpgradeResult result;
    {
      std::lock_guard<std::mutex> op(d->operation_mutex());
      if (d->stopping() || !manager_.daemon(d->id())) continue;  // on its way out
      result = upgrade_one(*d, request.nydusd_path, version);
    }
    all_ok &= result.ok;
    if (result.ok) {
      on_daemon_running(*d);  // a standby with the new binary
      spdlog::info("upgrade: nydusd {} pid {} -> {} in {:.1f} ms", result.id, result.old_pid, result.new_pid,
                   result.switch_ms);
    } else {
      spdlog::error("upgrade: nydusd {} not upgraded: {}", result.id, result.error);
    }
    results.push_back(std::move(result));
  }
  if (all_ok) manager_.set_nydusd_binary(request.nydusd_path, version);
  return results;
}

DaemonUpgradeResult RecoveryController::upgrade_one(Daemon& daemon, const std::string& binary,
                                                    const std::string& version) {
  DaemonRecord r = daemon.record();
  DaemonUpgradeResult result;
  result.id = r.id;
  result.old_pid = static_cast<int>(r.pid);
  auto started = Clock::now();
  auto finish = [&](bool ok, std::string error) {
    result.ok = ok;
    result.error = std::move(error);
    result.new_pid = daemon.pid();
    result.switch_ms = ms_since(started);
    if (ok) {
      std::lock_guard<std::mutex> lock(mu_);
      auto& s = stats_[r.id];
      s.last_upgrade_ms = result.switch_ms;
      s.attempts.clear();  // a fresh binary gets a fresh crash-loop budget
    }
    return result;
  };

  if (r.state != kStateRunning) {
    // Dead or FAILED: nothing serves; take over from the held state.
    discard_standby(r.id);
    auto st = take_over(daemon, binary, version, false);
    if (!st.ok()) return finish(false, st.error().message());
    return finish(true, "");
  }

  // The standby runs the old binary and would sit on the successor's socket.
  discard_standby(r.id);
  if (auto st = manager_.request_save(daemon); !st.ok()) return finish(false, "save: " + st.error().message());
  auto successor = start_successor(daemon, binary);
  if (!successor.ok()) return finish(false, "start of the new nydusd: " + successor.error().message());
  SupervisorStore* sup = manager_.supervisors();
  auto rollback = [&](std::string step, const Error& e) {
    sup->disarm(r.id);
    end_process(successor->process);
    ::unlink(successor->client->api_socket().c_str());
    return finish(false, fmt::format("{}: {} (the old nydusd pid {} keeps serving)", step, e.message(), r.pid));
  };
  if (auto st = sup->arm_takeover(r.id, successor->process.pid()); !st.ok()) return rollback("takeover", st.error());
  if (auto st = successor->client->takeover(); !st.ok()) return rollback("takeover", st.error());
  auto ready = wait_for_state(successor->process.pidfd(), *successor->client, r.log_file, kStateReady,
                              kSuccessorStartTimeout);
  if (!ready.ok()) return rollback("takeover", ready.error());

  // The old daemon goes: unwatched first, so its exit is no death.
  daemon.set_stopping(true);
  manager_.monitor().unwatch(r.id);
  if (auto st = daemon.client().exit(); !st.ok()) {
    daemon.set_stopping(false);
    if (auto w = manager_.watch(daemon); !w.ok()) spdlog::warn("nydusd {}: {}", r.id, w.error().message());
    return rollback("exit of the old nydusd", st.error());
  }
  if (!wait_exit(daemon.pidfd(), kOldDaemonExitTimeout)) {
    spdlog::warn("nydusd {}: the old pid {} did not exit {} ms after exit; killing it (the new one resends what "
                 "it had read)",
                 r.id, r.pid, kOldDaemonExitTimeout.count());
    (void)daemon.kill(SIGKILL);
    wait_exit(daemon.pidfd(), kKillWait);
  }
  (void)daemon.try_wait();
  auto start = [&]() -> Status {
    NYDUS_TRY(successor->client->start());
    NYDUS_ASSIGN_OR_RETURN(auto info, wait_for_state(successor->process.pidfd(), *successor->client, r.log_file,
                                                     kStateRunning, kSuccessorStartTimeout));
    (void)info;
    return ok_status();
  }();
  if (!start.ok()) {
    // The old process is gone: repair with the previous binary, as a
    // failover would.
    sup->disarm(r.id);
    end_process(successor->process);
    ::unlink(successor->client->api_socket().c_str());
    daemon.set_state(kStateDied);
    auto repaired = take_over(daemon, r.binary_path, r.version, false);
    return finish(false, fmt::format("start of the new nydusd: {}; {}", start.error().message(),
                                     repaired.ok() ? "rolled back to " + r.binary_path
                                                   : "rollback failed too: " + repaired.error().message()));
  }
  if (auto st = switch_to(daemon, std::move(successor).value(), binary, version); !st.ok()) {
    return finish(false, "switch: " + st.error().message());
  }
  return finish(true, "");
}

}  // namespace nydus::snapshotter
