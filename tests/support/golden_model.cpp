// Golden checkpoint access (see golden_model.h).
#include "support/golden_model.h"

#include "support/test_util.h"

namespace mambacpp::test {

GoldenModel::GoldenModel(const std::string& name)
    : dir(golden("models/" + name)),
      expected(nlohmann::json::parse(read_file(dir + "/expected.json"))),
      tensors(dir + "/expected.safetensors") {}

std::vector<float> GoldenModel::logits(size_t i, std::vector<int64_t>* shape) const {
  const Tensor t = tensors.get(expected["logits"][i]["logits"].get<std::string>());
  if (shape) shape->assign(t.shape.begin(), t.shape.begin() + t.ndim);
  const float* p = t.f32();
  return std::vector<float>(p, p + t.numel());
}

std::vector<std::vector<int32_t>> GoldenModel::input_ids(size_t i) const {
  return expected["logits"][i]["input_ids"].get<std::vector<std::vector<int32_t>>>();
}

}  // namespace mambacpp::test
