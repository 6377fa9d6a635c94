// The unix-socket HTTP server (see http.h), plus the message helpers, the
// query-string codec and the Router, which the client shares.
//
// Shape, after Beast's advanced server: a Listener accepts on its own strand
// and hands each connection to a Session on a fresh strand. A Session is kept
// alive only by its pending operation (shared_from_this bound into every
// completion handler) and walks one request at a time through
//   do_read -> on_readable -> read_header -> on_read_header [-> 100 Continue]
//   -> on_read -> handle_request -> write_response -> on_write -> do_read.
// The wait for a request's first byte (on_readable) has no deadline, so an
// idle connection stays open forever; from the first byte until the response
// is written a timer bounds the message (HttpServerOptions::message_timeout).

#include "common/hex.h"
#include "common/http.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace nydus {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = net::local::stream_protocol;

// ===========================================================================
// Messages

HttpResponse json_response(int status, const nlohmann::json& body) {
  // Error messages may quote paths that are not UTF-8; replace, never throw.
  return HttpResponse{status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                      "application/json"};
}

HttpResponse no_content() { return HttpResponse{204, {}, {}}; }

HttpResponse error_response(const Error& error) {
  return json_response(error.http_status(),
                       {{"code", error_kind_name(error.kind())}, {"message", error.message()}});
}

Result<nlohmann::json> parse_json_body(const HttpRequest& request) {
  try {
    return nlohmann::json::parse(request.body);
  } catch (const nlohmann::json::exception& e) {
    return make_error(ErrorKind::kInvalidArgument, "malformed JSON body: {}", e.what());
  }
}

// ===========================================================================
// Query strings

namespace {

bool is_unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

}  // namespace

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (is_unreserved(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

Result<std::string> url_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else if (c == '%') {
      int hi = i + 2 < text.size() ? hex_digit_value(text[i + 1]) : -1;
      int lo = i + 2 < text.size() ? hex_digit_value(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return make_error(ErrorKind::kInvalidArgument, "bad percent-encoding at offset {} of '{}'",
                          i, text);
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    NYDUS_ASSIGN_OR_RETURN(std::string key, url_decode(pair.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      NYDUS_ASSIGN_OR_RETURN(value, url_decode(pair.substr(eq + 1)));
    }
    out[std::move(key)] = std::move(value);
  }
  return out;
}

// ===========================================================================
// Router

Router& Router::add(std::string method, std::string path, Handler handler) {
  routes_[std::move(path)][std::move(method)] = std::move(handler);
  return *this;
}

HttpResponse Router::dispatch(const HttpRequest& request) const {
  try {
    auto path_it = routes_.find(request.path);
    if (path_it == routes_.end()) {
      return error_response(
          make_error(ErrorKind::kNotFound, "no API at path '{}'", request.path));
    }
    auto handler_it = path_it->second.find(request.method);
    if (handler_it == path_it->second.end()) {
      std::string allowed;
      for (const auto& [method, handler] : path_it->second) {
        allowed += allowed.empty() ? method : ", " + method;
      }
      HttpResponse response = error_response(
          make_error(ErrorKind::kInvalidArgument, "method {} is not allowed on '{}' (allowed: {})",
                     request.method, request.path, allowed));
      response.status = method_not_allowed_status_;
      return response;
    }
    return handler_it->second(request);
  } catch (const std::exception& e) {
    spdlog::error("HTTP handler for {} {} threw: {}", request.method, request.path, e.what());
    return error_response(make_error(ErrorKind::kInternal, "handler for {} {} failed: {}",
                                     request.method, request.path, e.what()));
  } catch (...) {
    spdlog::error("HTTP handler for {} {} threw a non-exception", request.method, request.path);
    return error_response(make_error(ErrorKind::kInternal, "handler for {} {} failed",
                                     request.method, request.path));
  }
}

// ===========================================================================
// Server

namespace {

constexpr std::string_view kServerName = "Nydus API";
// After a failed accept (EMFILE, ENFILE...) wait before the next one, so a
// persistent failure does not spin an io thread.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
constexpr int kHeaderFieldsTooLarge = 431;
constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";

std::string_view to_std(beast::string_view s) { return {s.data(), s.size()}; }

bool is_http_parse_error(const beast::error_code& ec) {
  return ec.category() == make_error_code(http::error::bad_method).category();
}

// Converts a parsed request; fails (400) only on a malformed query string.
Result<HttpRequest> to_http_request(http::request<http::string_body>&& message) {
  HttpRequest request;
  request.method = std::string(to_std(message.method_string()));
  std::string_view target = to_std(message.target());
  size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) {
    NYDUS_ASSIGN_OR_RETURN(request.query, parse_query(target.substr(question + 1)));
  }
  for (const auto& field : message) {
    std::string name(to_std(field.name_string()));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto [it, inserted] = request.headers.emplace(std::move(name), to_std(field.value()));
    if (!inserted) it->second.append(", ").append(to_std(field.value()));
  }
  request.body = std::move(message.body());
  return request;
}

class Session;

// What the server, its listener and every session share. Sessions hold it by
// shared_ptr, so completion handlers still queued after ~HttpServer stay valid.
struct ServerState {
  ServerState(std::string path, Router r, HttpServerOptions opts)
      : socket_path(std::move(path)), router(std::move(r)), options(opts) {}

  const std::string socket_path;
  const Router router;
  const HttpServerOptions options;

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> open{0};

  // Sessions are on different strands; this registry lets stop() reach them.
  std::mutex mu;
  bool stopped = false;                                               // guarded by mu
  std::unordered_map<const Session*, std::weak_ptr<Session>> sessions;  // guarded by mu
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Local::socket socket, std::shared_ptr<ServerState> state)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), state_(std::move(state)) {
    ++state_->open;
  }

  ~Session() {
    --state_->open;
    std::lock_guard lock(state_->mu);
    state_->sessions.erase(this);
  }

  void start() {
    net::dispatch(socket_.get_executor(),
                  beast::bind_front_handler(&Session::do_read, shared_from_this()));
  }

  // Safe from any thread: the close runs on the session's strand.
  void close_from_any_thread() {
    net::post(socket_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

 private:
  void do_read() {
    // A fresh parser per message: limits and state never leak between requests.
    parser_.emplace();
    parser_->header_limit(state_->options.header_limit);
    parser_->body_limit(state_->options.body_limit);
    if (buffer_.size() > 0) {  // a pipelined request is already buffered
      read_header();
      return;
    }
    // Idle: wait, with no deadline, for the next request's first byte or for
    // hang-up. Never time out here (see http.h).
    socket_.async_wait(Local::socket::wait_read,
                       beast::bind_front_handler(&Session::on_readable, shared_from_this()));
  }

  void on_readable(beast::error_code ec) {
    if (ec) return close();
    read_header();
  }

  void read_header() {
    arm_timer();
    http::async_read_header(socket_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_read_header, shared_from_this()));
  }

  void on_read_header(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    // curl sends "Expect: 100-continue" before larger bodies and would
    // otherwise stall a second before sending the body.
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      net::async_write(socket_, net::buffer(kContinueResponse.data(), kContinueResponse.size()),
                       beast::bind_front_handler(&Session::on_continue_sent, shared_from_this()));
      return;
    }
    read_body();
  }

  void on_continue_sent(beast::error_code ec, std::size_t) {
    if (ec) return close();
    read_body();
  }

  void read_body() {
    http::async_read(socket_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    disarm_timer();
    if (ec) return on_read_error(ec);
    handle_request();
  }

  void on_read_error(beast::error_code ec) {
    disarm_timer();
    if (ec == http::error::body_limit) {
      return write_error(make_error(ErrorKind::kTooLarge, "request body exceeds {} bytes",
                                    state_->options.body_limit));
    }
    if (ec == http::error::header_limit) {
      return write_error(make_error(ErrorKind::kTooLarge, "request header exceeds {} bytes",
                                    state_->options.header_limit),
                         kHeaderFieldsTooLarge);
    }
    if (is_http_parse_error(ec) && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      return write_error(
          make_error(ErrorKind::kInvalidArgument, "malformed HTTP request: {}", ec.message()));
    }
    // The peer closed (between requests or in the middle of one), the message
    // timer fired, or stop() closed us.
    if (ec != http::error::end_of_stream && ec != net::error::operation_aborted) {
      spdlog::debug("HTTP connection on {} closed: {}", state_->socket_path, ec.message());
    }
    close();
  }

  void handle_request() {
    auto& message = parser_->get();
    bool keep_alive = message.keep_alive();
    HttpResponse response;
    try {
      auto request = to_http_request(std::move(message));
      response = request.ok() ? state_->router.dispatch(*request) : error_response(request.error());
    } catch (const std::exception& e) {
      response = error_response(
          make_error(ErrorKind::kInternal, "failed to handle request: {}", e.what()));
    }
    ++state_->requests;
    write_response(std::move(response), keep_alive);
  }

  // Answers a request that could not be read; the connection closes after,
  // since the rest of the peer's message is still unread.
  void write_error(const Error& error, std::optional<int> status = std::nullopt) {
    HttpResponse response = error_response(error);
    if (status) response.status = *status;
    write_response(std::move(response), false);
  }

  void write_response(HttpResponse response, bool keep_alive) {
    auto& res = response_.emplace();
    res.version(11);
    int status = response.status;
    if (status < 200 || status > 599) {
      spdlog::error("HTTP handler returned invalid status {}; answering 500", status);
      status = 500;
      response = error_response(make_error(ErrorKind::kInternal, "invalid response status"));
    }
    res.result(static_cast<unsigned>(status));
    res.set(http::field::server, beast::string_view(kServerName.data(), kServerName.size()));
    // 204 and 304 carry neither a body nor Content-Length (RFC 9110 §8.6).
    if (status != 204 && status != 304) {
      res.set(http::field::content_type, response.content_type);
      res.body() = std::move(response.body);
      res.prepare_payload();
    }
    res.keep_alive(keep_alive);
    arm_timer();
    http::async_write(socket_, res,
                      beast::bind_front_handler(&Session::on_write, shared_from_this(), keep_alive));
  }

  void on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    disarm_timer();
    response_.reset();
    if (ec || !keep_alive) return close();
    do_read();
  }

  void close() {
    beast::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

  // The message timer: armed from a request's first byte until its response
  // is written, never while idle.
  void arm_timer() {
    timer_.expires_after(state_->options.message_timeout);
    timer_.async_wait(beast::bind_front_handler(&Session::on_timer, shared_from_this()));
  }

  void disarm_timer() { timer_.expires_at(net::steady_timer::time_point::max()); }

  void on_timer(beast::error_code ec) {
    if (ec == net::error::operation_aborted) return;
    // The wait may have completed just before disarm_timer() or a re-arm ran;
    // only an expiry that still lies in the past counts.
    if (timer_.expiry() > net::steady_timer::clock_type::now()) return;
    spdlog::warn("HTTP connection on {}: message not completed within {} ms, closing",
                 state_->socket_path, state_->options.message_timeout.count());
    close();
  }

  Local::socket socket_;
  net::steady_timer timer_;
  std::shared_ptr<ServerState> state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;  // alive while being written
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& io, std::shared_ptr<ServerState> state)
      : io_(io),
        acceptor_(net::make_strand(io)),
        retry_timer_(acceptor_.get_executor()),
        state_(std::move(state)) {}

  // Synchronous, before any asynchronous operation, so errors reach start().
  Status open() {
    namespace fs = std::filesystem;
    const std::string& path = state_->socket_path;
    if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
      return make_error(ErrorKind::kInvalidArgument,
                        "unix socket path '{}' is empty or longer than {} bytes", path,
                        sizeof(sockaddr_un::sun_path) - 1);
    }
    fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) {
      std::error_code fec;
      fs::create_directories(parent, fec);
      if (fec) return Error::from_errno(fec.value(), fmt::format("create directory {}", parent.string()));
    }
    // A previous server's socket file (left behind on purpose, see http.h).
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Error::from_errno(errno, fmt::format("remove stale socket {}", path));
    }
    beast::error_code ec;
    acceptor_.open(Local(), ec);
    if (!ec) acceptor_.bind(Local::endpoint(path), ec);
    if (ec) return Error::from_errno(ec.value(), fmt::format("bind {}", path));
    // chmod before listen(): until listen() every connect() is refused, so no
    // one connects through the umask's permissions.
    if (::chmod(path.c_str(), state_->options.socket_mode) != 0) {
      return Error::from_errno(errno, fmt::format("chmod {}", path));
    }
    acceptor_.listen(state_->options.listen_backlog, ec);
    if (ec) return Error::from_errno(ec.value(), fmt::format("listen on {}", path));
    return ok_status();
  }

  void start() {
    net::dispatch(acceptor_.get_executor(),
                  beast::bind_front_handler(&Listener::do_accept, shared_from_this()));
  }

  void stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->retry_timer_.cancel();
    });
  }

 private:
  void do_accept() {
    if (!acceptor_.is_open()) return;
    // Each connection gets its own strand.
    acceptor_.async_accept(net::make_strand(io_),
                           beast::bind_front_handler(&Listener::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec, Local::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      spdlog::warn("accept on {} failed: {}; retrying in {} ms", state_->socket_path,
                   ec.message(), kAcceptRetryDelay.count());
      retry_timer_.expires_after(kAcceptRetryDelay);
      retry_timer_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
        if (!wait_ec) self->do_accept();
      });
      return;
    }
    ++state_->accepted;
    auto session = std::make_shared<Session>(std::move(socket), state_);
    bool registered = false;
    {
      std::lock_guard lock(state_->mu);
      if (!state_->stopped) {
        state_->sessions.emplace(session.get(), session);
        registered = true;
      }
    }
    if (registered) session->start();  // otherwise the socket closes with `session`
    do_accept();
  }

  net::io_context& io_;
  Local::acceptor acceptor_;
  net::steady_timer retry_timer_;
  std::shared_ptr<ServerState> state_;
};

}  // namespace

struct HttpServer::Impl {
  Impl(net::io_context& io_context, std::string path, Router router, HttpServerOptions options)
      : io(io_context),
        state(std::make_shared<ServerState>(std::move(path), std::move(router), options)) {}

  net::io_context& io;
  std::shared_ptr<ServerState> state;
  std::shared_ptr<Listener> listener;  // set by start()
};

HttpServer::HttpServer(net::io_context& io, std::string socket_path, Router router,
                       HttpServerOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(socket_path), std::move(router), options)) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  if (impl_->listener) {
    return make_error(ErrorKind::kFailedPrecondition, "HTTP server on {} already started",
                      impl_->state->socket_path);
  }
  auto listener = std::make_shared<Listener>(impl_->io, impl_->state);
  NYDUS_TRY(listener->open());
  impl_->listener = std::move(listener);
  impl_->listener->start();
  spdlog::debug("HTTP server listening on {}", impl_->state->socket_path);
  return ok_status();
}

void HttpServer::stop() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(impl_->state->mu);
    if (impl_->state->stopped) return;
    impl_->state->stopped = true;
    for (auto& [raw, weak] : impl_->state->sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  if (impl_->listener) impl_->listener->stop();
  for (auto& session : live) session->close_from_any_thread();
}

const std::string& HttpServer::socket_path() const { return impl_->state->socket_path; }

HttpServerStats HttpServer::stats() const {
  return HttpServerStats{impl_->state->accepted.load(), impl_->state->requests.load(),
                         impl_->state->open.load()};
}

// ===========================================================================
// HttpServerThread

HttpServerThread::HttpServerThread(std::string socket_path, Router router,
                                   HttpServerOptions options, unsigned threads)
    : io_(std::make_unique<net::io_context>(static_cast<int>(std::max(threads, 1u)))),
      server_(std::make_unique<HttpServer>(*io_, std::move(socket_path), std::move(router),
                                           options)),
      thread_count_(std::max(threads, 1u)) {}

HttpServerThread::~HttpServerThread() { stop(); }

Status HttpServerThread::start() {
  NYDUS_TRY(server_->start());
  // No work guard: the listener's pending accept keeps run() going, and once
  // stop() has closed the listener and every connection, run() returns.
  for (unsigned i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { run_loop(); });
  return ok_status();
}

void HttpServerThread::stop() {
  server_->stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void HttpServerThread::run_loop() {
  // Handlers do not throw (Router catches), but an exception escaping run()
  // would terminate the process; log it and keep serving.
  for (;;) {
    try {
      io_->run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("HTTP server on {}: io thread caught: {}", server_->socket_path(), e.what());
    }
  }
}

}  // namespace nydus
