// condense: the command-line entry point. Each subcommand lives in its own
// tools/cmd_*.cpp and calls into src/; errors print one line and exit 1.
#include <iostream>

#include "core/error.h"
#include "tools/cli_common.h"

int main(int argc, char** argv) {
  CLI::App app{"condense: compress, run and measure Llama-family language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "condense 0.1.0");
  condense::cli::register_info(app);
  condense::cli::register_generate(app);
  condense::cli::register_eval(app);
  condense::cli::register_init(app);
  condense::cli::register_data(app);
  condense::cli::register_train(app);
  condense::cli::register_run(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const condense::Error& e) {
    std::cerr << "condense: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "condense: internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
