// condense: the command-line entry point. Each subcommand lives in its own
// tools/cmd_*.cpp and calls into src/; errors print one line and exit 1.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <new>

#include "kernels/cpu/cpu_features.h"

#include "core/error.h"
#include "dist/comm.h"
#include "dist/rank_output.h"
#include "core/version.h"
#include "tools/cli_common.h"

namespace {

// OpenMP threads wait passively (sleep, not spin) for their next parallel
// region: spinning workers took the core from a neighbouring process and made
// 2-thread runs 2-5x slower than 1 thread on a shared machine. libgomp reads
// OMP_WAIT_POLICY once, when it is loaded, before main: so the process sets it
// and replaces itself once. A user's own OMP_WAIT_POLICY is kept.
void wait_passively(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with the default policy
}

// Prints "condense: <kind>: <what>" and returns code; in a run of several
// ranks, names the rank and ends them all (the others would wait for this one
// in their next collective).
int error_exit(const char* kind, const std::string& what, int code) {
  condense::dist::restore_stderr();
  if (condense::dist::Communicator* w = condense::dist::started_world()) {
    std::cerr << "condense: " << kind << ": rank " << w->rank() << ": " << what << std::endl;
    w->abort(code);
  }
  std::cerr << "condense: " << kind << ": " << what << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  wait_passively(argv);
  try {
    condense::kernels::active_isa();  // a bad CONDENSE_ISA fails here, before any work
    condense::cli::apply_default_threads();  // every command's; --threads overrides
  } catch (const std::exception& e) {
    std::cerr << "condense: error: " << e.what() << "\n";
    return 1;
  }
  CLI::App app{"condense: compress, run and measure Llama-family language models"};
  app.name("condense");
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows every option's default
  app.set_version_flag("--version", std::string("condense ") + condense::version() + " (" + condense::git_revision() + ")");
  condense::cli::register_info(app);
  condense::cli::register_generate(app);
  condense::cli::register_eval(app);
  condense::cli::register_bench(app);
  condense::cli::register_init(app);
  condense::cli::register_data(app);
  condense::cli::register_train(app);
  condense::cli::register_run(app);
  condense::cli::register_quantize(app);
  condense::cli::register_report(app);
  condense::cli::register_sweep(app);
  condense::cli::register_serve(app);
  condense::cli::register_convert(app);
  condense::cli::refuse_non_finite_numbers(app);
  // No command: the help (the list of commands). An unknown one: say so, with
  // the list (CLI11 alone reports "A subcommand is required").
  if (argc < 2) {
    std::cout << app.help();
    return 1;
  }
  const std::string first = argv[1];
  if (first[0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* c : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || c->get_name() == first;
      names += (names.empty() ? "" : ", ") + c->get_name();
    }
    if (!known) {
      std::cerr << "condense: error: unknown command '" << first << "'. Commands: " << names << " (condense COMMAND --help)\n";
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const condense::Error& e) {
    return error_exit("error", e.what(), 1);
  } catch (const std::bad_alloc&) {
    // Sizes from files are checked before allocation; what is left are sizes asked for (batch x seq, --kv-memory, a huge model).
    return error_exit("error", "out of memory. Lower the sizes asked for (batch, seq, context, KV memory) or use a machine with more memory", 1);
  } catch (const std::exception& e) {
    return error_exit("internal error", e.what(), 2);
  }
  condense::dist::finalize();
  return 0;
}
