#include "nydusd/daemon/error_events.h"

#include <ctime>
#include <mutex>

namespace nydus::daemon {

namespace {

std::string http_date(std::time_t when) {
  std::tm tm{};
  gmtime_r(&when, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

class ErrorEventSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ErrorEventSink(std::shared_ptr<ErrorEvents> events) : events_(std::move(events)) {
    set_level(spdlog::level::err);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    events_->record(std::string(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

 private:
  std::shared_ptr<ErrorEvents> events_;
};

}  // namespace

ErrorEvents::ErrorEvents(size_t max_events, size_t max_bytes)
    : max_events_(max_events), max_bytes_(max_bytes) {}

void ErrorEvents::record(const std::string& message) {
  std::string entry = http_date(std::time(nullptr)) + " - " + message;
  // One message larger than the whole budget keeps its head only.
  if (entry.size() > max_bytes_) entry.resize(max_bytes_);
  std::lock_guard lock(mu_);
  ++total_;
  bytes_ += entry.size();
  errors_.push_back(std::move(entry));
  while (errors_.size() > max_events_ || bytes_ > max_bytes_) {
    bytes_ -= errors_.front().size();
    errors_.pop_front();
  }
}

nlohmann::json ErrorEvents::to_json() const {
  std::lock_guard lock(mu_);
  return {{"max_errors", max_events_},
          {"total_errors", total_},
          {"max_size", max_bytes_},
          {"total_size", bytes_},
          {"errors", errors_}};
}

std::shared_ptr<spdlog::sinks::sink> ErrorEvents::make_sink(std::shared_ptr<ErrorEvents> events) {
  return std::make_shared<ErrorEventSink>(std::move(events));
}

}  // namespace nydus::daemon
