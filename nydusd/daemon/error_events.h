// The ring of recent errors behind GET /api/v1/daemon/events.
//
// The reference keeps the last backend errors so an operator can see why
// reads fail without shelling into the node for the log. Here every message
// logged at error level or above is kept (backend, chunk validation, FUSE
// and API failures alike): the same strings that reach the log file, each
// prefixed with an HTTP date and " - " as the reference does. Bounded both
// by count and by total bytes, oldest dropped first.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/base_sink.h>

namespace nydus::daemon {

inline constexpr size_t kMaxErrorEvents = 500;
inline constexpr size_t kMaxErrorEventBytes = 50 * 1024;

class ErrorEvents {
 public:
  ErrorEvents(size_t max_events = kMaxErrorEvents, size_t max_bytes = kMaxErrorEventBytes);

  void record(const std::string& message);
  // {"max_errors","total_errors","max_size","total_size","errors":[..]}
  nlohmann::json to_json() const;

  // An spdlog sink feeding this ring with error and critical messages; the
  // sink holds the ring alive, so attaching it to a logger is enough.
  static std::shared_ptr<spdlog::sinks::sink> make_sink(std::shared_ptr<ErrorEvents> events);

 private:
  const size_t max_events_;
  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::deque<std::string> errors_;  // guarded by mu_
  size_t bytes_ = 0;                // guarded by mu_
  uint64_t total_ = 0;              // guarded by mu_; every error ever recorded
};

}  // namespace nydus::daemon
