// The CLI's subcommands. Each file tools/cmd_*.cpp adds one subcommand (its options and help text) to the
// app; its callback runs after parsing and reports failures by throwing mambacpp::Error.
#pragma once

#include <CLI/CLI.hpp>

namespace mambacpp::cli {

void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_forward_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_task_command(CLI::App& app);

}  // namespace mambacpp::cli
