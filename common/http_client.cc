// The blocking unix-socket HTTP client (see http.h).
//
// Each call runs Beast's asynchronous operations on a private io_context with
// run_until(deadline): one deadline then covers connect, write and read, with
// no extra thread and no per-operation timer bookkeeping. On expiry the socket
// is closed and the io_context drained, so no handler outlives the call.
//
// Reuse and reconnect: before reusing the kept-alive connection the client
// polls it; a connection that shows hang-up or unexpected bytes is replaced.
// If a reused connection still fails before any response byte arrives (the
// server closed it between our poll and our write), the request is sent once
// more on a fresh connection. A fresh connection is never retried.

#include "common/http.h"

#include <poll.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <mutex>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace nydus {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = net::local::stream_protocol;
using Clock = std::chrono::steady_clock;

namespace {

// A response larger than this is refused (metrics and DaemonInfo are far smaller).
constexpr std::uint64_t kMaxResponseBody = 64 * 1024 * 1024;
constexpr std::string_view kUserAgent = "nydus-http-client";
// How much of a non-JSON error body is quoted in an Error message.
constexpr size_t kMaxQuotedBody = 512;

// The peer went away: the request may be resent on a fresh connection if no
// byte of the response arrived.
bool is_peer_closed(const beast::error_code& ec) {
  return ec == net::error::eof || ec == http::error::end_of_stream ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe;
}

// A target goes verbatim onto the request line; refuse what would break it.
bool is_valid_target(std::string_view target) {
  if (target.empty() || target.front() != '/') return false;
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

ErrorKind kind_from_status(int status) {
  switch (status) {
    case 403: return ErrorKind::kPermissionDenied;
    case 404: return ErrorKind::kNotFound;
    case 409: return ErrorKind::kAlreadyExists;
    case 413: return ErrorKind::kTooLarge;
    case 501: return ErrorKind::kUnsupported;
    case 503: return ErrorKind::kNotReady;
    case 504: return ErrorKind::kTimeout;
    default: return status < 500 ? ErrorKind::kInvalidArgument : ErrorKind::kInternal;
  }
}

// The inverse of error_kind_name(); the reference nydusd sends "UNDEFINED",
// for which the status decides.
std::optional<ErrorKind> kind_from_name(std::string_view name) {
  static constexpr std::array kAll = {
      ErrorKind::kInvalidArgument, ErrorKind::kNotFound,     ErrorKind::kAlreadyExists,
      ErrorKind::kFailedPrecondition, ErrorKind::kNotReady,  ErrorKind::kUnsupported,
      ErrorKind::kCorrupt,         ErrorKind::kIo,           ErrorKind::kTooLarge,
      ErrorKind::kPermissionDenied, ErrorKind::kTimeout,     ErrorKind::kInternal,
  };
  for (ErrorKind kind : kAll) {
    if (name == error_kind_name(kind)) return kind;
  }
  return std::nullopt;
}

Error error_from_response(std::string_view method, std::string_view target,
                          const HttpResponse& response) {
  ErrorKind kind = kind_from_status(response.status);
  std::string message;
  auto body = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object() && body.contains("message") && body["message"].is_string()) {
    message = body["message"].get<std::string>();
    if (body.contains("code") && body["code"].is_string()) {
      if (auto named = kind_from_name(body["code"].get<std::string>())) kind = *named;
    }
  } else {
    message = response.body.substr(0, kMaxQuotedBody);
  }
  return make_error(kind, "{} {}: HTTP {}: {}", method, target, response.status, message);
}

// Admits one request at a time, waiting at most until a deadline. (Not a
// std::timed_mutex: GCC 12's ThreadSanitizer does not intercept the
// pthread_mutex_clocklock behind try_lock_until and then reports every access
// it guards as a race.)
class TurnGate {
 public:
  bool enter_until(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    if (!idle_.wait_until(lock, deadline, [this] { return !busy_; })) return false;
    busy_ = true;
    return true;
  }
  void enter() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [this] { return !busy_; });
    busy_ = true;
  }
  void leave() {
    {
      std::lock_guard lock(mu_);
      busy_ = false;
    }
    idle_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  bool busy_ = false;  // guarded by mu_
};

// Leaves the gate on scope exit.
class TurnGuard {
 public:
  explicit TurnGuard(TurnGate& gate) : gate_(gate) {}
  TurnGuard(const TurnGuard&) = delete;
  TurnGuard& operator=(const TurnGuard&) = delete;
  ~TurnGuard() { gate_.leave(); }

 private:
  TurnGate& gate_;
};

}  // namespace

struct HttpClient::Impl {
  explicit Impl(std::string path) : socket_path(std::move(path)) {}

  // The outcome of one request on one connection.
  struct Exchange {
    Result<HttpResponse> result;
    bool retryable = false;  // the peer closed before any response byte
  };

  Result<HttpResponse> request(const std::string& method, const std::string& target,
                               std::string body, std::chrono::milliseconds timeout);
  Result<http::request<http::string_body>> build_request(const std::string& method,
                                                         const std::string& target,
                                                         std::string body) const;
  bool idle_connection_usable();
  Status connect(Clock::time_point deadline);
  Exchange exchange(const http::request<http::string_body>& request,
                    Clock::time_point deadline);
  bool run_until(Clock::time_point deadline, const bool& done);
  void drop_connection();

  const std::string socket_path;
  TurnGate turn;  // one request at a time; the holder owns everything below
  net::io_context io;
  std::optional<Local::socket> socket;  // the kept-alive connection
  beast::flat_buffer buffer;            // bytes read past the last response
};

Result<http::request<http::string_body>> HttpClient::Impl::build_request(
    const std::string& method, const std::string& target, std::string body) const {
  http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    return make_error(ErrorKind::kInvalidArgument, "unknown HTTP method '{}'", method);
  }
  if (!is_valid_target(target)) {
    return make_error(ErrorKind::kInvalidArgument, "invalid HTTP target '{}'", target);
  }
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::user_agent, beast::string_view(kUserAgent.data(), kUserAgent.size()));
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.body() = std::move(body);
  request.prepare_payload();
  request.keep_alive(true);
  return request;
}

bool HttpClient::Impl::idle_connection_usable() {
  // Between requests the server sends nothing; readable means hang-up, an
  // error, or stray bytes, and each makes the connection unusable.
  if (buffer.size() > 0) return false;
  pollfd pfd{socket->native_handle(), POLLIN | POLLRDHUP, 0};
  return ::poll(&pfd, 1, 0) == 0;
}

bool HttpClient::Impl::run_until(Clock::time_point deadline, const bool& done) {
  io.restart();
  io.run_until(deadline);
  if (done) return true;
  // Expired: abort the pending operations and let their handlers run, since
  // they refer to the caller's stack.
  drop_connection();
  io.restart();
  io.run();
  return false;
}

Status HttpClient::Impl::connect(Clock::time_point deadline) {
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return make_error(ErrorKind::kInvalidArgument,
                      "unix socket path '{}' is empty or longer than {} bytes", socket_path,
                      sizeof(sockaddr_un::sun_path) - 1);
  }
  drop_connection();
  socket.emplace(io);
  beast::error_code ec;
  bool done = false;
  socket->async_connect(Local::endpoint(socket_path), [&](beast::error_code result) {
    ec = result;
    done = true;
  });
  if (!run_until(deadline, done)) {
    return make_error(ErrorKind::kTimeout, "connect to {} timed out", socket_path);
  }
  if (!ec) return ok_status();
  drop_connection();
  switch (ec.value()) {
    case ENOENT:        // no socket file yet
    case ECONNREFUSED:  // a file, but no listener (not started yet, or dead)
    case EAGAIN:        // listen backlog full
      return Error(ErrorKind::kNotReady,
                   fmt::format("connect to {}: {} (server not running?)", socket_path,
                               ec.message()),
                   ec.value());
    default:
      return Error::from_errno(ec.value(), fmt::format("connect to {}", socket_path));
  }
}

HttpClient::Impl::Exchange HttpClient::Impl::exchange(
    const http::request<http::string_body>& request, Clock::time_point deadline) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponseBody);
  if (request.method() == http::verb::head) parser.skip(true);

  beast::error_code write_ec;
  beast::error_code read_ec;
  bool read_started = false;
  bool done = false;
  http::async_write(*socket, request, [&](beast::error_code ec, std::size_t) {
    write_ec = ec;
    // A server may answer before reading the whole body (413) and close; its
    // answer is still waiting in our receive queue.
    if (ec && ec != net::error::broken_pipe && ec != net::error::connection_reset) {
      done = true;
      return;
    }
    read_started = true;
    http::async_read(*socket, buffer, parser, [&](beast::error_code read_result, std::size_t) {
      read_ec = read_result;
      done = true;
    });
  });

  std::string what = fmt::format("{} {} on {}", request.method_string().to_string(),
                                 request.target().to_string(), socket_path);
  if (!run_until(deadline, done)) {
    return {make_error(ErrorKind::kTimeout, "{}: no response in time", what), false};
  }
  beast::error_code ec = read_started ? read_ec : write_ec;
  if (ec) {
    drop_connection();
    ErrorKind kind = ec == http::error::body_limit ? ErrorKind::kTooLarge : ErrorKind::kIo;
    return {make_error(kind, "{}: {}", what, ec.message()),
            is_peer_closed(ec) && !parser.got_some()};
  }

  auto& message = parser.get();
  if (write_ec || !message.keep_alive()) drop_connection();
  HttpResponse response;
  response.status = static_cast<int>(message.result_int());
  response.content_type = message[http::field::content_type].to_string();
  response.body = std::move(message.body());
  return {std::move(response), false};
}

void HttpClient::Impl::drop_connection() {
  if (socket) {
    beast::error_code ignored;
    socket->close(ignored);
    socket.reset();
  }
  buffer.clear();
}

Result<HttpResponse> HttpClient::Impl::request(const std::string& method,
                                               const std::string& target, std::string body,
                                               std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (!turn.enter_until(deadline)) {
    return make_error(ErrorKind::kTimeout, "{} {} on {}: other requests did not finish in time",
                      method, target, socket_path);
  }
  TurnGuard guard(turn);
  NYDUS_ASSIGN_OR_RETURN(auto message, build_request(method, target, std::move(body)));

  bool reused = socket.has_value();
  if (reused && !idle_connection_usable()) {
    spdlog::debug("HTTP connection to {} was closed by the server; reconnecting", socket_path);
    drop_connection();
    reused = false;
  }
  if (!socket) NYDUS_TRY(connect(deadline));
  Exchange outcome = exchange(message, deadline);
  if (!outcome.result.ok() && outcome.retryable && reused) {
    spdlog::debug("HTTP connection to {} lost ({}); retrying once on a new one", socket_path,
                  outcome.result.error().message());
    NYDUS_TRY(connect(deadline));
    outcome = exchange(message, deadline);
  }
  return std::move(outcome.result);
}

HttpClient::HttpClient(std::string socket_path)
    : impl_(std::make_unique<Impl>(std::move(socket_path))) {}

HttpClient::~HttpClient() = default;

Result<HttpResponse> HttpClient::request(std::string method, std::string target,
                                         std::string body, std::chrono::milliseconds timeout) {
  return impl_->request(method, target, std::move(body), timeout);
}

Result<nlohmann::json> HttpClient::request_json(std::string method, std::string target,
                                                const std::optional<nlohmann::json>& body,
                                                std::chrono::milliseconds timeout) {
  std::string payload;
  if (body) payload = body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  NYDUS_ASSIGN_OR_RETURN(HttpResponse response,
                         request(method, target, std::move(payload), timeout));
  if (response.status < 200 || response.status > 299) {
    return error_from_response(method, target, response);
  }
  if (response.body.empty()) return nlohmann::json(nullptr);
  auto parsed = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return make_error(ErrorKind::kCorrupt, "{} {} on {}: response body is not JSON", method,
                      target, socket_path());
  }
  return parsed;
}

void HttpClient::close() {
  impl_->turn.enter();
  TurnGuard guard(impl_->turn);
  impl_->drop_connection();
}

const std::string& HttpClient::socket_path() const { return impl_->socket_path; }

}  // namespace nydus
