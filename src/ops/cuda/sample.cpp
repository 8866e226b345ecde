// The Tensor-level entry point of the sampling kernel (sample_rows_cuda, cuda_ops.h): checks the logits and the
// filters, then launches sample_kernel.cu on the Context's stream.
#include <string>

#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/sample_kernel.h"
#include "ops/cuda/tensor_rows.h"

namespace mambacpp {

void sample_rows_cuda(int32_t* ids, Tensor logits, unsigned char* seen, const double* uniforms,
                      const SampleFilters& f, Context& ctx) {
  std::string why;
  MAMBA_CHECK(cuda::on_cuda({{"logits", &logits}}, &why), "sample (cuda): {}", why);
  MAMBA_CHECK(logits.dtype == DType::f32, "sample (cuda): logits must be f32, got {}", dtype_name(logits.dtype));
  MAMBA_CHECK(f.temperature >= 0 && f.top_k >= 0 && f.top_p > 0 && f.top_p <= 1 && f.min_p >= 0 && f.min_p <= 1 &&
                  f.repetition_penalty > 0,
              "sample (cuda): filters out of range (temperature {}, top-k {}, top-p {}, min-p {}, penalty {})",
              f.temperature, f.top_k, f.top_p, f.min_p, f.repetition_penalty);
  const cuda::Rows r = cuda::rows_of(logits);
  cuda::SampleParams p;
  p.ids = ids, p.logits = logits.f32(), p.ld = r.ld, p.m = r.rows, p.v = r.cols;
  p.seen = f.repetition_penalty != 1.0f ? seen : nullptr;
  p.uniforms = uniforms;
  p.temperature = f.temperature, p.top_k = f.top_k, p.top_p = f.top_p, p.min_p = f.min_p;
  p.penalty = f.repetition_penalty;
  MAMBA_CHECK(cuda::sample_kernel_supports(p, &why), "sample (cuda): {}", why);
  cuda::sample_kernel_launch(p, cuda_state(ctx).stream);
}

}  // namespace mambacpp
