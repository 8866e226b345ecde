// Training checkpoints. Each one is a folder `step-NNNNNNN` inside the output folder holding the model in the
// Hugging Face layout (config.json from MambaConfig::to_hf_json, model.safetensors from named_parameters) —
// loadable as a model folder as it stands — plus the optimizer's moments (optimizer.safetensors) and the
// trainer's state (trainer_state.json: step, data-loader position and seed, best validation loss, the run's
// settings). Every file is written atomically into a fresh temporary folder that is renamed into place once
// complete; then the links `latest` (and `best`, when the checkpoint has the best validation loss so far) are
// switched to it atomically, and folders no link names any more are removed. A failure while saving leaves the
// previous checkpoints and links untouched.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "model/weights.h"
#include "train/adamw.h"

namespace mambacpp {

struct TrainerState {
  int64_t step = 0;        // optimizer steps taken
  int64_t next_batch = 0;  // the data loader's position: number of the next micro-batch to draw
  uint64_t seed = 0;       // the data loader's seed (batches are drawn from (seed, number) alone)
  double best_val_loss = std::numeric_limits<double>::infinity();
  int64_t best_step = -1;
  nlohmann::json settings = nlohmann::json::object();  // the run's options that resuming must keep
};

// Saves a checkpoint of `w` (f32 matrices, on the CPU or a device: device tensors are copied to the host),
// `opt` and `state` under `out_dir` and points `latest` (and `best`
// when `is_best`) at it. Throws Error naming the file when a write fails.
void save_checkpoint(const std::string& out_dir, const ModelWeights& w, const AdamW& opt, const TrainerState& state,
                     bool is_best);

// The folder `out_dir/latest` points to, or "" when there is none.
std::string latest_checkpoint(const std::string& out_dir);

// Reads trainer_state.json of a checkpoint folder; errors name the file and field.
TrainerState load_trainer_state(const std::string& ckpt_dir);
// Restores the optimizer's moments and step count from a checkpoint folder.
void load_optimizer_state(const std::string& ckpt_dir, AdamW& opt);

}  // namespace mambacpp
