// `condense serve`'s HTTP side (cpp-httplib): the OpenAI routes, /health and
// /metrics over a Scheduler. Handlers parse and check a request, queue it,
// then stream its tokens (SSE) or wait for the whole response; a client that
// goes away cancels its sequence (a failed write; while a request waits for
// tokens the server writes an SSE comment, or a space before a JSON body,
// every second, which is how it notices).
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "serve/metrics.h"
#include "serve/openai_protocol.h"
#include "serve/scheduler.h"

namespace httplib {
class Server;
}

namespace condense {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                     // 0: any free port (bind() says which)
  std::string api_key;                 // "" : no key needed
  size_t max_body_bytes = 4u << 20;    // larger bodies: 413
  int http_threads = 0;                // most threads at once (started on demand); 0: max_queue + max_seqs + 32 (a streaming request holds one)
  int read_timeout_s = 10;             // a client slower than this per read is dropped
  // Tokens of one request that come faster than this go out in one chunk (the
  // handler polls each interval instead of being woken per token); 0: one
  // chunk per token, each waking the handler.
  double stream_interval_s = 0.0005;
};

class HttpServer {
 public:
  HttpServer(Scheduler& sched, const ServedModel& model, const HttpOptions& opt, const SchedulerOptions& sched_opt);
  ~HttpServer();
  // Binds the listening socket; returns the port. Throws Error when it cannot.
  int bind();
  // Serves until shutdown() (from another thread or a signal watcher).
  void listen();
  // Refuses new requests (503), waits up to `drain_s` for the running and
  // queued ones, then stops listening. True when everything finished in time.
  bool shutdown(double drain_s);
  const ServerMetrics& metrics() const { return metrics_; }

 private:
  void routes();
  Scheduler& sched_;
  ServedModel model_;
  HttpOptions opt_;
  int threads_;
  ServerMetrics metrics_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<httplib::Server> svr_;
};

}  // namespace condense
