// Access to the golden checkpoints under tests/golden/models: their folder, the recorded expectations
// (expected.json) and the recorded tensors (expected.safetensors: "logits.I", "grad.NAME").
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "io/safetensors.h"

namespace mambacpp::test {

struct GoldenModel {
  std::string dir;
  nlohmann::json expected;
  SafetensorsFile tensors;

  explicit GoldenModel(const std::string& name);
  // The recorded logits of case i as a flat vector, with its shape.
  std::vector<float> logits(size_t i, std::vector<int64_t>* shape = nullptr) const;
  // The input ids of case i, one vector per sequence.
  std::vector<std::vector<int32_t>> input_ids(size_t i) const;
};

// The names of the golden checkpoints.
inline const std::vector<std::string>& golden_model_names() {
  static const std::vector<std::string> names = {"tied", "untied"};
  return names;
}

}  // namespace mambacpp::test
