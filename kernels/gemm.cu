// Matrix products on the GPU ([GEMM on the GPU], gemm.h): cuBLASLt for single products (bias and
// GELU in the epilogue, [GEMM epilogues]), cuBLAS strided-batched products for attention's
// per-head products.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>

#include "common/errors.h"
#include "kernels/cuda_check.h"
#include "kernels/gelu_math.cuh"
#include "kernels/gemm.h"

namespace dpt::kernels {
namespace {

using bf16 = __nv_bfloat16;

// [Row-major through column-major]
// cuBLAS is column-major; a row-major R x C matrix with leading dimension ld is, to cuBLAS, the
// column-major C x R matrix with the same ld. So the row-major C = op(A) op(B) is computed as the
// column-major C^T = op(B)^T op(A)^T: cuBLAS's first operand is our B, its second our A, its
// m = N and n = M, and each operand keeps its own transpose flag. The stored shapes cuBLAS sees:
//   our B, not transposed: N x K (ld ldb)    transposed: K x N, op T
//   our A, not transposed: K x M (ld lda)    transposed: M x K, op T
//   C / D:                 N x M (ld ldc)
// The bias (one value per column of the row-major result) is then one value per ROW of the
// column-major D, which is exactly what CUBLASLT_EPILOGUE_BIAS broadcasts (length = rows of D).

template <typename T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else
    return CUDA_R_16BF;
}

cublasOperation_t cublas_op(bool trans) {
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// Largest power of two (at most 256, cuBLASLt's default assumption) dividing the address: the
// heuristic must only offer algorithms whose vector loads this pointer can serve.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  return static_cast<uint32_t>(std::min<uintptr_t>(a & (~a + 1), 256));
}

std::string shape_text(bool ta, bool tb, int M, int N, int K, int lda, int ldb, int ldc) {
  return "trans_a=" + std::to_string(ta) + " trans_b=" + std::to_string(tb) +
         " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
         " lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
         " ldc=" + std::to_string(ldc);
}

// The same preconditions as gemm_cpu: sizes non-negative, every leading dimension at least a
// row of the stored (row-major) matrix.
void check_shape(bool ta, bool tb, int M, int N, int K, int lda, int ldb, int ldc) {
  DPT_CHECK(M >= 0 && N >= 0 && K >= 0,
            "negative size: " + shape_text(ta, tb, M, N, K, lda, ldb, ldc));
  DPT_CHECK(
      lda >= std::max(1, ta ? M : K) && ldb >= std::max(1, tb ? K : N) && ldc >= std::max(1, N),
      "leading dimension shorter than a row: " + shape_text(ta, tb, M, N, K, lda, ldb, ldc));
}

template <typename T>
__device__ __forceinline__ float load_f(const T* p) {
  if constexpr (std::is_same_v<T, float>)
    return *p;
  else
    return __bfloat162float(*p);
}
template <typename T>
__device__ __forceinline__ void store_f(T* p, float x) {
  if constexpr (std::is_same_v<T, float>)
    *p = x;
  else
    *p = __float2bfloat16(x);  // round to nearest even
}

// C = beta * C + bias for every batch item, row-major M x N with leading dimension ldc. Serves
// K == 0 (the product is empty) and the bias of the cublasGemmEx fallback (beta = 1). beta == 0
// does not read C, as in BLAS, so NaN in an overwritten output does not survive.
template <typename TC>
__global__ void scale_add_bias_kernel(TC* c, int M, int N, int ldc, long long stride_c,
                                      size_t total, float beta, const TC* bias) {
  const size_t per_item = static_cast<size_t>(M) * N;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t item = idx / per_item;
    const size_t rem = idx - item * per_item;
    const int i = static_cast<int>(rem / N);
    const int j = static_cast<int>(rem - static_cast<size_t>(i) * N);
    TC* p = c + item * stride_c + static_cast<size_t>(i) * ldc + j;
    float v = beta == 0.0f ? 0.0f : beta * load_f(p);
    if (bias != nullptr) v += load_f(bias + j);
    store_f(p, v);
  }
}

constexpr int kThreads = 256;
// Grid-stride loops: the grid is capped, the loop covers the rest.
unsigned capped_blocks(size_t total) {
  return static_cast<unsigned>(
      std::min<size_t>((total + kThreads - 1) / kThreads, size_t(1) << 16));
}

template <typename TC>
void launch_scale_add_bias(TC* c, int M, int N, int ldc, long long stride_c, int batch, float beta,
                           const TC* bias, cudaStream_t stream) {
  const size_t total = static_cast<size_t>(batch) * M * N;
  if (total == 0) return;
  scale_add_bias_kernel<TC>
      <<<capped_blocks(total), kThreads, 0, stream>>>(c, M, N, ldc, stride_c, total, beta, bias);
  DPT_CHECK_LAUNCH(stream);
}

// The unfused [GEMM epilogues] compute gelu() and gelu_grad() of gelu_math.cuh, gelu.cu's own
// functions, so that they give the bits of the separate GELU kernels
// (GemmCuda.UnfusedEpiloguesMatchSeparateGeluKernelsBitForBit).
using cuda_detail::gelu;
using cuda_detail::gelu_grad;

// Over the M x N result: C = gelu(aux) (gelu_aux) or C = C * gelu'(aux) (dgelu). Each element is
// read and written by one thread.
template <typename TC>
__global__ void gelu_epilogue_kernel(TC* c, int ldc, const TC* aux, int ld_aux, int N, size_t total,
                                     bool dgelu) {
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = idx / N;
    const size_t j = idx - i * N;
    TC* p = c + i * ldc + j;
    const float x = load_f(aux + i * ld_aux + j);
    store_f(p, dgelu ? gelu_grad(x) * load_f(p) : gelu(x));
  }
}

template <typename TC>
void launch_gelu_epilogue(bool dgelu, TC* c, int ldc, const TC* aux, int ld_aux, int M, int N,
                          cudaStream_t stream) {
  const size_t total = static_cast<size_t>(M) * N;
  if (total == 0) return;
  gelu_epilogue_kernel<TC>
      <<<capped_blocks(total), kThreads, 0, stream>>>(c, ldc, aux, ld_aux, N, total, dgelu);
  DPT_CHECK_LAUNCH(stream);
}

const char* epilogue_name(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::none:
      return "none";
    case GemmEpilogue::gelu_aux:
      return "gelu_aux";
    case GemmEpilogue::dgelu:
      return "dgelu";
  }
  return "?";
}

// The preconditions of [GEMM epilogues]. The message is only built on failure.
template <typename T, typename TC>
void check_epilogue(GemmEpilogue epilogue, int M, int N, float beta, const TC* C, const TC* bias,
                    const TC* aux, int ld_aux) {
  const auto what = [&](const char* why) {
    return std::string("GEMM epilogue ") + epilogue_name(epilogue) + ": M=" + std::to_string(M) +
           " N=" + std::to_string(N) + " ld_aux=" + std::to_string(ld_aux) + ": " + why;
  };
  DPT_CHECK((std::is_same_v<T, TC>), what("the result must have the operands' type"));
  DPT_CHECK(beta == 0.0f, what("beta must be 0 (the result is written, not read)"));
  DPT_CHECK(epilogue != GemmEpilogue::dgelu || bias == nullptr, what("dgelu takes no bias"));
  DPT_CHECK(ld_aux >= std::max(1, N), what("ld_aux shorter than a row"));
  DPT_CHECK(M == 0 || N == 0 || (aux != nullptr && aux != C),
            what("aux must be given and must not be the result"));
}

// What decides the cuBLASLt descriptors and the chosen algorithm of one product: types, shape,
// leading dimensions, the epilogue (with the aux matrix's leading dimension) and the pointers'
// alignments (the heuristic's preferences; it reads the bias and aux pointers' values).
struct PlanKey {
  cudaDataType_t ab_type, c_type;
  bool trans_a, trans_b, has_bias;
  GemmEpilogue epilogue;
  int M, N, K, lda, ldb, ldc, ld_aux;
  uint32_t align_a, align_b, align_c, align_bias, align_aux;

  auto tie() const {
    return std::tie(ab_type, c_type, trans_a, trans_b, has_bias, epilogue, M, N, K, lda, ldb, ldc,
                    ld_aux, align_a, align_b, align_c, align_bias, align_aux);
  }
  bool operator<(const PlanKey& o) const { return tie() < o.tie(); }
};

template <typename T, typename TC>
PlanKey plan_key(bool trans_a, bool trans_b, int M, int N, int K, int lda, int ldb, int ldc,
                 const T* A, const T* B, const TC* C, const TC* bias, GemmEpilogue epilogue,
                 const TC* aux, int ld_aux) {
  PlanKey key{};
  key.ab_type = cuda_type<T>();
  key.c_type = cuda_type<TC>();
  key.trans_a = trans_a;
  key.trans_b = trans_b;
  key.has_bias = bias != nullptr;
  key.epilogue = epilogue;
  key.M = M;
  key.N = N;
  key.K = K;
  key.lda = lda;
  key.ldb = ldb;
  key.ldc = ldc;
  key.ld_aux = ld_aux;
  key.align_a = alignment_of(A);
  key.align_b = alignment_of(B);
  key.align_c = alignment_of(C);
  key.align_bias = alignment_of(bias);
  key.align_aux = alignment_of(aux);
  return key;
}

// Host-side cuBLASLt objects of one PlanKey. lt_ok is false when the heuristic offered no
// algorithm (or cublasLtMatmul refused it); that product then goes through cublasGemmEx plus
// scale_add_bias_kernel for the bias, or, with a GELU epilogue, the unfused path of
// [GEMM epilogues].
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // cuBLASLt's A: our B
  cublasLtMatrixLayout_t b = nullptr;  // cuBLASLt's B: our A
  cublasLtMatrixLayout_t d = nullptr;  // C and D (in place)
  cublasLtMatmulAlgo_t algo{};
  bool lt_ok = false;

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    // Destructors never throw: failures are reported and ignored.
    if (d && cublasLtMatrixLayoutDestroy(d) != CUBLAS_STATUS_SUCCESS) warn("layout D");
    if (b && cublasLtMatrixLayoutDestroy(b) != CUBLAS_STATUS_SUCCESS) warn("layout B");
    if (a && cublasLtMatrixLayoutDestroy(a) != CUBLAS_STATUS_SUCCESS) warn("layout A");
    if (desc && cublasLtMatmulDescDestroy(desc) != CUBLAS_STATUS_SUCCESS) warn("matmul desc");
  }
  static void warn(const char* what) {
    std::fprintf(stderr, "warning: cuBLASLt: destroying %s failed\n", what);
  }
};

}  // namespace

// [GEMM plans]
// One LtPlan per PlanKey, made on the first product of that key and kept for the life of the
// GemmCuda: creating descriptors and running the heuristic are host-only calls (no device
// allocation), so the first step of a run pays a little host time per distinct shape and later
// steps none. The workspace is allocated once here and shared by the cuBLASLt and cuBLAS
// handles: products of one GemmCuda must be ordered (one stream at a time, or streams ordered by
// events); two products running at once on different streams would race on it.
struct GemmCuda::Impl {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<PlanKey, std::unique_ptr<LtPlan>> plans;
  bool fused_epilogues = true;
  GemmEpilogueCounts epilogue_counts;

  ~Impl() {
    plans.clear();
    if (blas && cublasDestroy(blas) != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "warning: cublasDestroy failed\n");
    if (lt && cublasLtDestroy(lt) != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "warning: cublasLtDestroy failed\n");
    if (workspace && cudaFree(workspace) != cudaSuccess)
      std::fprintf(stderr, "warning: cudaFree of the GEMM workspace failed\n");
  }

  // cublasSetStream resets the handle to cuBLAS's own workspace pool, so ours is set after it on
  // every call (both are host-only).
  void bind_blas(cudaStream_t stream) {
    DPT_CHECK_CUBLAS(cublasSetStream(blas, stream));
    DPT_CHECK_CUBLAS(cublasSetWorkspace(blas, workspace, workspace_bytes));
  }

  LtPlan& plan(const PlanKey& key, const void* bias, const void* aux) {
    auto it = plans.find(key);
    if (it != plans.end()) return *it->second;
    auto p = std::make_unique<LtPlan>();
    make_plan(key, bias, aux, *p);
    return *plans.emplace(key, std::move(p)).first->second;
  }

  // One product through cuBLASLt with the plan of `key`: false (nothing launched) when that key
  // has no cuBLASLt algorithm, and the caller takes its fallback. Operands swapped per
  // [Row-major through column-major]; C is C and D (in place).
  bool matmul_lt(const PlanKey& key, float alpha, const void* A, const void* B, float beta, void* C,
                 const void* bias, const void* aux, cudaStream_t stream) {
    LtPlan& p = plan(key, bias, aux);
    if (!p.lt_ok) return false;
    if (bias != nullptr) {
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &bias, sizeof(bias)));
    }
    if (aux != nullptr) {
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
          p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    }
    const cublasStatus_t cublasLtMatmul_status =
        cublasLtMatmul(lt, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.d, C, p.d, &p.algo,
                       workspace, workspace_bytes, stream);
    // NOT_SUPPORTED is decided on the host before anything runs: should the heuristic's choice
    // still be refused, this key takes the fallback from now on instead of failing the run.
    if (cublasLtMatmul_status != CUBLAS_STATUS_NOT_SUPPORTED) {
      DPT_CHECK_CUBLAS(cublasLtMatmul_status);
      return true;
    }
    p.lt_ok = false;
    return false;
  }

  void make_plan(const PlanKey& k, const void* bias, const void* aux, LtPlan& p) {
    const cudaDataType_t ab = k.ab_type, c = k.c_type;
    // fp32 compute and scale; CUBLAS_COMPUTE_32F (not _FAST_TF32) keeps fp32 products in full
    // fp32, and bf16 operands run on tensor cores accumulating in fp32.
    DPT_CHECK_CUBLAS(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const int32_t op_a = cublas_op(k.trans_b), op_b = cublas_op(k.trans_a);
    DPT_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    DPT_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    switch (k.epilogue) {
      case GemmEpilogue::none:
        if (k.has_bias) epilogue = CUBLASLT_EPILOGUE_BIAS;
        break;
      case GemmEpilogue::gelu_aux:
        epilogue = k.has_bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
        break;
      case GemmEpilogue::dgelu:
        // Not DGELU_BGRAD: its bias gradient (the column sums of this result, i.e. the gradient
        // of the bias that made aux) is stored, not added, in the result's type (bf16 for bf16
        // results), by cuBLASLt's own reduction. Ours are fp32, accumulate over micro-batches and
        // come from the fixed-order kernel of linear.cu ([Bias gradient on the GPU]).
        epilogue = CUBLASLT_EPILOGUE_DGELU;
        break;
    }
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                      &epilogue, sizeof(epilogue)));
    }
    if (k.has_bias) {
      const int32_t bias_type = c;  // the bias has the output's type (TC)
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                      &bias_type, sizeof(bias_type)));
      // The heuristic reads the bias pointer's value for its alignment (cublasLt.h).
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &bias, sizeof(bias)));
    }
    if (k.epilogue != GemmEpilogue::none) {
      // The aux matrix, in cuBLAS's view N x M column-major like D, ld_aux apart. Its type is
      // left unset: it defaults to D's (CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, which only
      // fp8 results need). The heuristic reads the pointer's value for its alignment.
      const int64_t ld_aux = k.ld_aux;
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                      &ld_aux, sizeof(ld_aux)));
      DPT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
          p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    }
    // Stored shapes per [Row-major through column-major].
    DPT_CHECK_CUBLAS(
        cublasLtMatrixLayoutCreate(&p.a, ab, k.trans_b ? k.K : k.N, k.trans_b ? k.N : k.K, k.ldb));
    DPT_CHECK_CUBLAS(
        cublasLtMatrixLayoutCreate(&p.b, ab, k.trans_a ? k.M : k.K, k.trans_a ? k.K : k.M, k.lda));
    DPT_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p.d, c, k.N, k.M, k.ldc));

    cublasLtMatmulPreference_t pref = nullptr;
    DPT_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = workspace_bytes;
    // cuBLASLt's A is our B and its B our A.
    const uint32_t al_a = k.align_b, al_b = k.align_a, al_c = k.align_c;
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &al_a, sizeof(al_a));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &al_b, sizeof(al_b));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &al_c, sizeof(al_c));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &al_c, sizeof(al_c));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &found);
    // Destroyed before any of the checks below can throw.
    const cublasStatus_t destroyed = cublasLtMatmulPreferenceDestroy(pref);
    // NOT_SUPPORTED (or no result) means no cuBLASLt algorithm fits this key: fall back.
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) DPT_CHECK_CUBLAS(st);
    DPT_CHECK_CUBLAS(destroyed);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) return;
    if (found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
      p.algo = result.algo;
      p.lt_ok = true;
    }
  }
};

GemmCuda::GemmCuda(size_t workspace_bytes) : impl_(new Impl()) {
  try {
    DPT_CHECK(workspace_bytes > 0, "the GEMM workspace must not be empty");
    impl_->workspace_bytes = workspace_bytes;
    DPT_CHECK_CUDA(cudaMalloc(&impl_->workspace, workspace_bytes));  // 256-byte aligned
    DPT_CHECK_CUBLAS(cublasLtCreate(&impl_->lt));
    DPT_CHECK_CUBLAS(cublasCreate(&impl_->blas));
    // Default math: fp32 products stay fp32 (no TF32), as the compute type says.
    DPT_CHECK_CUBLAS(cublasSetMathMode(impl_->blas, CUBLAS_DEFAULT_MATH));
    DPT_CHECK_CUBLAS(cublasSetWorkspace(impl_->blas, impl_->workspace, workspace_bytes));
  } catch (...) {
    delete impl_;
    throw;
  }
}

GemmCuda::~GemmCuda() {
  delete impl_;
}

void GemmCuda::set_fused_epilogues(bool enabled) {
  impl_->fused_epilogues = enabled;
}

GemmEpilogueCounts GemmCuda::epilogue_counts() const {
  return impl_->epilogue_counts;
}

template <typename T, typename TC>
void GemmCuda::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A,
                    int lda, const T* B, int ldb, float beta, TC* C, int ldc, const TC* bias,
                    CudaStream stream, GemmEpilogue epilogue, TC* aux, int ld_aux) {
  check_shape(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (epilogue != GemmEpilogue::none)
    check_epilogue<T, TC>(epilogue, M, N, beta, C, bias, aux, ld_aux);
  if (M == 0 || N == 0) return;
  DPT_CHECK(C != nullptr && (K == 0 || (A != nullptr && B != nullptr)),
            "null operand: " + shape_text(trans_a, trans_b, M, N, K, lda, ldb, ldc));

  if (epilogue != GemmEpilogue::none) {
    // cuBLASLt's rule for the aux matrix (cublasLt.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD): ld
    // a multiple of 8 elements. 16-byte alignment is our own precaution (the header states none
    // for aux; the heuristic only reads the pointer). Outside them cuBLASLt is not asked at all:
    // it might answer INVALID_VALUE, an error, rather than NOT_SUPPORTED.
    const bool fusable =
        impl_->fused_epilogues && K > 0 && ld_aux % 8 == 0 && alignment_of(aux) >= 16;
    if (fusable) {
      const PlanKey key = plan_key<T, TC>(trans_a, trans_b, M, N, K, lda, ldb, ldc, A, B, C, bias,
                                          epilogue, aux, ld_aux);
      if (impl_->matmul_lt(key, alpha, A, B, 0.0f, C, bias, aux, stream)) {
        ++impl_->epilogue_counts.fused;
        return;
      }
    }
    ++impl_->epilogue_counts.unfused;
    if (epilogue == GemmEpilogue::gelu_aux) {  // aux = product + bias, then C = gelu(aux)
      gemm<T, TC>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 0.0f, aux, ld_aux, bias,
                  stream);
      launch_gelu_epilogue<TC>(false, C, ldc, aux, ld_aux, M, N, stream);
    } else {  // C = product, then C = C * gelu'(aux)
      gemm<T, TC>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc, nullptr, stream);
      launch_gelu_epilogue<TC>(true, C, ldc, aux, ld_aux, M, N, stream);
    }
    return;
  }

  if (K == 0) {  // an empty product: C = beta C + bias
    launch_scale_add_bias<TC>(C, M, N, ldc, 0, 1, beta, bias, stream);
    return;
  }
  const PlanKey key = plan_key<T, TC>(trans_a, trans_b, M, N, K, lda, ldb, ldc, A, B, C, bias,
                                      GemmEpilogue::none, nullptr, 0);
  if (impl_->matmul_lt(key, alpha, A, B, beta, C, bias, nullptr, stream)) return;
  impl_->bind_blas(stream);
  DPT_CHECK_CUBLAS(cublasGemmEx(impl_->blas, cublas_op(trans_b), cublas_op(trans_a), N, M, K,
                                &alpha, B, cuda_type<T>(), ldb, A, cuda_type<T>(), lda, &beta, C,
                                cuda_type<TC>(), ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias != nullptr) launch_scale_add_bias<TC>(C, M, N, ldc, 0, 1, 1.0f, bias, stream);
}

template <typename T>
void GemmCuda::gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                            const T* A, int lda, long long stride_a, const T* B, int ldb,
                            long long stride_b, float beta, T* C, int ldc, long long stride_c,
                            int batch, CudaStream stream) {
  check_shape(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  DPT_CHECK(batch >= 0 && stride_a >= 0 && stride_b >= 0 && stride_c >= 0,
            "negative batch or stride: batch=" + std::to_string(batch) +
                " stride_a=" + std::to_string(stride_a) + " stride_b=" + std::to_string(stride_b) +
                " stride_c=" + std::to_string(stride_c));
  if (batch == 0 || M == 0 || N == 0) return;
  DPT_CHECK(C != nullptr && (K == 0 || (A != nullptr && B != nullptr)),
            "null operand: " + shape_text(trans_a, trans_b, M, N, K, lda, ldb, ldc));
  if (K == 0) {
    launch_scale_add_bias<T>(C, M, N, ldc, stride_c, batch, beta, nullptr, stream);
    return;
  }
  // cuBLAS picks kernels for any leading dimension, stride and alignment, which the per-head
  // products of attention (odd head sizes, T x T slices) need. Operands swapped as in
  // [Row-major through column-major].
  impl_->bind_blas(stream);
  DPT_CHECK_CUBLAS(cublasGemmStridedBatchedEx(
      impl_->blas, cublas_op(trans_b), cublas_op(trans_a), N, M, K, &alpha, B, cuda_type<T>(), ldb,
      stride_b, A, cuda_type<T>(), lda, stride_a, &beta, C, cuda_type<T>(), ldc, stride_c, batch,
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template void GemmCuda::gemm<float, float>(bool, bool, int, int, int, float, const float*, int,
                                           const float*, int, float, float*, int, const float*,
                                           CudaStream, GemmEpilogue, float*, int);
template void GemmCuda::gemm<bf16, bf16>(bool, bool, int, int, int, float, const bf16*, int,
                                         const bf16*, int, float, bf16*, int, const bf16*,
                                         CudaStream, GemmEpilogue, bf16*, int);
template void GemmCuda::gemm<bf16, float>(bool, bool, int, int, int, float, const bf16*, int,
                                          const bf16*, int, float, float*, int, const float*,
                                          CudaStream, GemmEpilogue, float*, int);
template void GemmCuda::gemm_batched<float>(bool, bool, int, int, int, float, const float*, int,
                                            long long, const float*, int, long long, float, float*,
                                            int, long long, int, CudaStream);
template void GemmCuda::gemm_batched<bf16>(bool, bool, int, int, int, float, const bf16*, int,
                                           long long, const bf16*, int, long long, float, bf16*,
                                           int, long long, int, CudaStream);

}  // namespace dpt::kernels
