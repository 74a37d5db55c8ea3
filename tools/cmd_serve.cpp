// condense serve MODEL: an OpenAI-compatible HTTP server with continuous
// batching (src/serve/; docs/SERVE.md).
#include <csignal>
#include <cstdio>
#include <memory>
#include <ctime>
#include <thread>

#include "core/error.h"
#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "serve/chat_template.h"
#include "serve/http_server.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {

struct ServeArgs {
  ModelArgs model;
  HttpOptions http;
  SchedulerOptions sched;
  std::string kv_memory = "1G";
  int64_t kv_blocks = 0;
  std::string kv_dtype, served_name, chat_template, draft, device = "cpu";
  bool no_draft = false;
  int draft_k = 4, draft_k_max = 8;
  double drain_s = 30;
  double stream_interval_ms = 0.5;
};

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

}  // namespace

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve",
                                 "Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, "
                                 "/health, /metrics) with continuous batching; SIGTERM/SIGINT drain and exit 0");
  auto a = std::make_shared<ServeArgs>();
  add_model_args(*cmd, a->model);
  cmd->add_option("--host", a->http.host, "Address to listen on (0.0.0.0: every interface)");
  cmd->add_option("--port", a->http.port, "Port to listen on (0: any free port, printed at start)")->check(CLI::Range(0, 65535));
  cmd->add_option("--max-batch-tokens", a->sched.max_batch_tokens,
                  "Tokens per engine step: one per decoding sequence plus prefill chunks of new ones (smaller: steadier TPOT, slower TTFT)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-seqs", a->sched.max_seqs, "Sequences running at once")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--max-queue", a->sched.max_queue, "Requests waiting to start; more are answered 503 with Retry-After")
      ->check(CLI::Range(0, 1 << 20));
  auto* mem = cmd->add_option("--kv-memory", a->kv_memory, "KV cache pool size (K/M/G = 1024-based units); it must hold one full-context sequence");
  cmd->add_option("--kv-blocks", a->kv_blocks, "KV cache pool size in 16-position blocks (instead of --kv-memory)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 31))
      ->excludes(mem);
  add_device_option(*cmd, a->device);
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache dtype: f32, f16, bf16, fp8, int8 (default: the checkpoint's calibrated fp8/int8, else f32)");
  cmd->add_option("--api-key", a->http.api_key, "Require 'Authorization: Bearer KEY' on /v1 routes (default: the CONDENSE_API_KEY variable, else none)")
      ->envname("CONDENSE_API_KEY");
  cmd->add_option("--served-model-name", a->served_name, "The model's id in /v1/models and requests (default: MODEL as given)");
  cmd->add_option("--chat-template", a->chat_template,
                  "Chat template file: Jinja (as Hugging Face's), or JSON role formats with {content} (docs/SERVE.md). Default: the model's own "
                  "(tokenizer_config.json / chat_template.jinja / GGUF tokenizer.chat_template), else a plain 'User: ... Assistant:' one");
  cmd->add_option("--drain-seconds", a->drain_s, "On SIGTERM/SIGINT, how long running requests may take to finish")->check(CLI::NonNegativeNumber);
  cmd->add_option("--http-threads", a->http.http_threads, "HTTP worker threads (0: max-queue + max-seqs + 32; each streaming request holds one)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stream-interval-ms", a->stream_interval_ms,
                  "Tokens of one stream that come faster than this are sent together in one chunk (saves a thread wake-up and a "
                  "write per token on small models); 0: one chunk per token")
      ->check(CLI::Range(0.0, 1000.0));
  cmd->add_option("--draft", a->draft,
                  "Speculative decoding: a small model with the same vocabulary proposes tokens for every decoding sequence (each "
                  "its own adaptive draft length) and the model verifies them in its batched step; outputs keep the model's "
                  "distribution (greedy ones are identical). Default: the draft a .cpk records (a recipe's draft stage)");
  cmd->add_flag("--no-draft", a->no_draft, "Serve without the draft a .cpk records");
  cmd->add_option("--draft-k", a->draft_k, "Draft tokens per round at the start (then adapted within 1..--draft-k-max)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--draft-k-max", a->draft_k_max, "Most draft tokens per round")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->callback([a] {
    if (a->no_draft && !a->draft.empty()) fail("--no-draft", "contradicts --draft " + a->draft);
    if (a->draft_k > a->draft_k_max) fail("--draft-k", "is more than --draft-k-max (" + std::to_string(a->draft_k_max) + ")");
    apply_threads(a->model.threads);
    const Device device = parse_device(a->device);
    a->http.stream_interval_s = a->stream_interval_ms / 1e3;
    const auto t0 = std::chrono::steady_clock::now();
    LoadedModel lm = load_model(a->model.model, a->model.tokenizer, {.effective_f32 = false});
    const Tokenizer& tok = require_tokenizer(lm);
    if (a->draft.empty() && !a->no_draft) {
      a->draft = recorded_draft(a->model.model, lm.model);
      if (!a->draft.empty()) std::fprintf(stderr, "speculative decoding with the draft recorded in the model: %s (--no-draft: without)\n", a->draft.c_str());
    }
    const std::string bos_text = lm.bos_text.empty() ? "<s>" : lm.bos_text, eos_text = lm.eos_text.empty() ? "</s>" : lm.eos_text;
    ChatTemplate tmpl = !a->chat_template.empty() ? ChatTemplate::from_file(a->chat_template, bos_text, eos_text)
                        : !lm.chat_template.empty() ? ChatTemplate::jinja(lm.chat_template, bos_text, eos_text, a->model.model + " chat_template")
                                                    : ChatTemplate();
    if (tmpl.is_jinja()) {
      try {
        tmpl.apply({{"system", "s"}, {"user", "u"}});  // a template condense cannot render fails here, not per request
      } catch (const Error& e) {
        try {
          tmpl.apply({{"user", "u"}});  // some templates refuse a system message; a lone user turn is enough
        } catch (const Error& e2) {
          fail("--chat-template", std::string("the chat template cannot be rendered: ") + e2.what(),
               "Pass another template with --chat-template FILE (Jinja, or JSON role formats: docs/SERVE.md)");
        }
      }
    }
    EngineOptions eo{lm.model.config.max_seq, a->kv_blocks, a->kv_dtype, a->kv_blocks > 0 ? 0 : parse_bytes(a->kv_memory, "--kv-memory"), device};
    Engine engine(lm.model, eo);
    ServedModel sm = served_model(a->served_name.empty() ? a->model.model : a->served_name, a->model.model, lm.model.config, tok, tmpl);
    sm.max_seq = engine.max_seq();
    release_weights(lm.model);
    std::unique_ptr<Engine> draft;
    SpecConfig spec;
    if (!a->draft.empty()) {
      LoadedModel dm = load_model(a->draft, "", {.effective_f32 = false});
      check_draft_fits(a->draft, dm.model.config, engine.config());
      // as many positions as the model's pool, and a block per sequence more (proposals run ahead)
      const int64_t blocks = engine.kv().total_blocks() + a->sched.max_seqs;
      draft = std::make_unique<Engine>(dm.model, EngineOptions{std::min(dm.model.config.max_seq, engine.max_seq()), blocks, "", 0, device});
      spec.k = a->draft_k;
      spec.k_max = a->draft_k_max;
    }
    Scheduler sched(engine, tok, a->sched, draft.get(), spec);
    HttpServer server(sched, sm, a->http, a->sched);
    const int port = server.bind();
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    std::fprintf(stderr,
                 "condense serve: %s on http://%s:%d/v1 (model id '%s'; %s, %d threads; context %d; KV %s, %lld blocks = %lld positions, "
                 "%.1f MiB; max %d tokens/step; queue %d; chat template: %s; loaded in %.1f s)\n",
                 a->model.model.c_str(), a->http.host.c_str(), port, sm.id.c_str(), kernels::isa_name(kernels::active_isa()), active_threads(),
                 sm.max_seq, kv_code_name(engine.kv().code()), static_cast<long long>(engine.kv().total_blocks()),
                 static_cast<long long>(engine.kv().total_blocks() * kKvBlockTokens), double(engine.kv().bytes()) / 1048576.0,
                 a->sched.max_batch_tokens, a->sched.max_queue, tmpl.name().c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::thread watcher([&] {
      while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::fprintf(stderr, "condense serve: signal %d: not accepting new requests; draining for up to %.0f s\n", int(g_signal), a->drain_s);
      const bool drained = server.shutdown(a->drain_s);
      std::fprintf(stderr, "condense serve: %s; stopped\n", drained ? "every request finished" : "drain deadline passed, the rest cancelled");
    });
    server.listen();
    if (g_signal == 0) g_signal = SIGTERM;  // listen() ended on its own (socket error): let the watcher finish
    watcher.join();
  });
}

}  // namespace condense::cli
