// Saving and reading training checkpoints (checkpoint.h).
#include "train/checkpoint.h"

#include <fmt/format.h>
#include <stdlib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "io/atomic_file.h"

namespace mambacpp {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string link_target(const fs::path& link) {
  std::error_code ec;
  if (!fs::is_symlink(fs::symlink_status(link, ec))) return "";
  const fs::path t = fs::read_symlink(link, ec);
  return ec ? "" : t.filename().string();
}

std::string state_json(const TrainerState& s) {
  json j = {{"step", s.step},
            {"next_batch", s.next_batch},
            {"seed", s.seed},
            {"best_step", s.best_step},
            {"settings", s.settings}};
  j["best_val_loss"] = std::isfinite(s.best_val_loss) ? json(s.best_val_loss) : json(nullptr);
  return j.dump(2) + "\n";
}

// Writes every file of the checkpoint into `dir` (which exists and is empty).
// Tensors on a device are copied to the host first (into `storage`).
void write_files(const fs::path& dir, const ModelWeights& w, const AdamW& opt, const TrainerState& state) {
  write_file_atomic((dir / "config.json").string(), w.config.to_hf_json());
  const bool on_host = w.embedding.device == Device::cpu;
  const ModelWeights host = on_host ? ModelWeights{} : w.to_device(Device::cpu, DType::f32);
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : (on_host ? w : host).named_parameters()) params.emplace(name, t);
  save_safetensors((dir / "model.safetensors").string(), params);
  std::map<std::string, Tensor> moments = opt.state();
  std::vector<Buffer> storage;
  for (auto& [name, t] : moments) {
    if (t.device == Device::cpu) continue;
    storage.emplace_back(t.nbytes());
    copy_memory(storage.back().data(), Device::cpu, t.data, t.device, t.nbytes());
    t.data = storage.back().data();
    t.device = Device::cpu;
  }
  save_safetensors((dir / "optimizer.safetensors").string(), moments, {{"step", std::to_string(opt.steps())}});
  write_file_atomic((dir / "trainer_state.json").string(), state_json(state));
}

// Removes step-* folders that neither `latest` nor `best` names.
void prune(const fs::path& out) {
  const std::string keep1 = link_target(out / "latest"), keep2 = link_target(out / "best");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name == keep1 || name == keep2 || e.is_symlink()) continue;
    fs::remove_all(e.path(), ec);
  }
}

}  // namespace

void save_checkpoint(const std::string& out_dir, const ModelWeights& w, const AdamW& opt, const TrainerState& state,
                     bool is_best) {
  const fs::path out(out_dir);
  const std::string name = fmt::format("step-{:07d}", state.step);
  std::string tmp = (out / (name + ".tmp-XXXXXX")).string();
  MAMBA_CHECK(::mkdtemp(tmp.data()) != nullptr, "{}: cannot create a checkpoint folder: {}", out_dir,
              std::strerror(errno));
  std::error_code ec;
  try {
    fs::permissions(tmp, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
    write_files(tmp, w, opt, state);
    fs::remove_all(out / name, ec);
    fs::rename(tmp, out / name, ec);
    MAMBA_CHECK(!ec, "{}: cannot move the checkpoint into place: {}", (out / name).string(), ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  replace_symlink((out / "latest").string(), name);
  if (is_best) replace_symlink((out / "best").string(), name);
  prune(out);
}

std::string latest_checkpoint(const std::string& out_dir) {
  const fs::path link = fs::path(out_dir) / "latest";
  std::error_code ec;
  if (link_target(link).empty() || !fs::is_directory(link, ec)) return "";
  return link.string();
}

TrainerState load_trainer_state(const std::string& ckpt_dir) {
  const std::string path = (fs::path(ckpt_dir) / "trainer_state.json").string();
  json j;
  try {
    j = json::parse(read_whole_file(path));
    TrainerState s;
    s.step = j.at("step").get<int64_t>();
    s.next_batch = j.at("next_batch").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.best_step = j.at("best_step").get<int64_t>();
    const json& best = j.at("best_val_loss");
    if (!best.is_null()) s.best_val_loss = best.get<double>();
    s.settings = j.at("settings");
    MAMBA_CHECK(s.step >= 0 && s.next_batch >= 0 && s.settings.is_object(), "{}: fields out of range", path);
    return s;
  } catch (const json::exception& e) {
    fail("{}: malformed trainer state: {}", path, e.what());
  }
}

void load_optimizer_state(const std::string& ckpt_dir, AdamW& opt) {
  const SafetensorsFile file((fs::path(ckpt_dir) / "optimizer.safetensors").string());
  std::map<std::string, Tensor> tensors;
  for (const std::string& name : file.names()) tensors.emplace(name, file.get(name));
  const auto it = file.metadata().find("step");
  MAMBA_CHECK(it != file.metadata().end(), "{}: no 'step' in the metadata", file.path());
  int64_t steps = -1;
  try {
    steps = std::stoll(it->second);
  } catch (const std::exception&) {
    fail("{}: metadata 'step' is not a number: '{}'", file.path(), it->second);
  }
  opt.load_state(tensors, steps, file.path());
}

}  // namespace mambacpp
