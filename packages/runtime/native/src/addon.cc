// tsinfer native backend: a device-resident KV cache over onnxruntime's C++ API.
//
// One Engine = one onnxruntime session (CPU or CUDA) plus, per layer, one K
// and one V buffer of shape [maxSlots, kvHeads, maxSeq, headDim], allocated
// with the session's allocator on the session's device and zero-filled. A run
// binds a contiguous slot range [lo, lo + rows) of every buffer with IoBinding
// as BOTH `past_key_values.i.*` and `present.i.*`: GroupQueryAttention then
// runs in share-buffer mode and writes each new K/V row in place, so nothing
// of the cache crosses to the host. input_ids / attention_mask (and
// position_ids when the graph has them) and the runtime's logit-row index are
// bound from host memory; only the outputs the caller asks for (in-graph
// ArgMax, TopK or last-position logits, see src/model/augment.ts) come back.
//
// Session creation and runs execute on libuv's thread pool (Napi::AsyncWorker)
// and return Promises, so the JS thread that owns the Engine stays free.
// The caller (src/native/runner.ts) owns every decision: which slots, which
// tokens, which rows to reduce. This file only executes.
#include <dlfcn.h>
#include <napi.h>
#include <onnxruntime_cxx_api.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr const char* kLogitRows = "tsinfer_logit_rows";
constexpr const char* kArgmax = "tsinfer_argmax";
constexpr const char* kTopkValues = "tsinfer_topk_values";
constexpr const char* kTopkIndices = "tsinfer_topk_indices";
constexpr const char* kLastLogits = "tsinfer_last_logits";

// ---------------------------------------------------------------------------
// CUDA runtime, loaded at run time (only for zero-filling and reading/writing
// the device cache; onnxruntime does everything else). Not linked, so the
// addon builds and loads on hosts without CUDA.
struct Cudart {
  void* handle = nullptr;
  int (*setDevice)(int) = nullptr;
  int (*memset)(void*, int, size_t) = nullptr;
  int (*memcpy)(void*, const void*, size_t, int) = nullptr;
  int (*deviceSynchronize)() = nullptr;
  std::string error;
};
enum { kCudaMemcpyHostToDevice = 1, kCudaMemcpyDeviceToHost = 2 };

Cudart& cudart() {
  static Cudart c;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* names[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so"};
    for (const char* n : names) {
      c.handle = dlopen(n, RTLD_NOW | RTLD_GLOBAL);
      if (c.handle != nullptr) break;
    }
    if (c.handle == nullptr) {
      c.error = "libcudart.so.13 (or .12) not found on LD_LIBRARY_PATH";
      return;
    }
    c.setDevice = reinterpret_cast<int (*)(int)>(dlsym(c.handle, "cudaSetDevice"));
    c.memset = reinterpret_cast<int (*)(void*, int, size_t)>(dlsym(c.handle, "cudaMemset"));
    c.memcpy = reinterpret_cast<int (*)(void*, const void*, size_t, int)>(dlsym(c.handle, "cudaMemcpy"));
    c.deviceSynchronize = reinterpret_cast<int (*)()>(dlsym(c.handle, "cudaDeviceSynchronize"));
    if (!c.setDevice || !c.memset || !c.memcpy || !c.deviceSynchronize) {
      c.error = "libcudart lacks cudaSetDevice/cudaMemset/cudaMemcpy/cudaDeviceSynchronize";
      c.handle = nullptr;
    }
  });
  return c;
}

void cudaCheck(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + " failed with CUDA error " + std::to_string(rc));
}

// ---------------------------------------------------------------------------
Ort::Env& ortEnv() {
  // onnxruntime keeps one environment per process (onnxruntime-node's is the same one).
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "tsinfer-native");
  return env;
}

struct Config {
  bool cuda = false;
  int deviceId = 0;
  int intraOpThreads = 0;
  bool spin = false;
  std::vector<std::pair<std::string, std::string>> sessionConfig;
  int numLayers = 0, kvHeads = 0, headDim = 0, maxSlots = 0, maxSeq = 0;
  bool fp16 = false;
  std::string inputIds, attentionMask, positionIds;
  bool idsI32 = false, maskI32 = false, posI32 = false;
  std::vector<std::string> pastKeys, pastValues, presentKeys, presentValues;
};

// The session and the cache. Shared with in-flight workers so a release
// while a run is in flight waits for it (the mutex) and never frees under it.
struct Core {
  Config cfg;
  std::unique_ptr<Ort::Session> session;
  std::unique_ptr<Ort::MemoryInfo> kvMem;      // where the cache lives
  std::unique_ptr<Ort::Allocator> allocator;   // the session's allocator for that device
  std::vector<void*> keys, values;
  size_t elemSize = 4;
  size_t slotElems = 0;  // kvHeads * maxSeq * headDim
  std::mutex mu;
  bool released = false;
  std::string ortVersion;

  ~Core() { releaseLocked(); }

  void releaseLocked() {
    if (allocator) {
      for (void* p : keys) if (p) allocator->Free(p);
      for (void* p : values) if (p) allocator->Free(p);
    }
    keys.clear();
    values.clear();
    allocator.reset();
    kvMem.reset();
    session.reset();
    released = true;
  }

  size_t layerBytes() const { return static_cast<size_t>(cfg.maxSlots) * slotElems * elemSize; }

  void create(const std::vector<uint8_t>& model) {
    Ort::SessionOptions so;
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    if (cfg.intraOpThreads > 0) so.SetIntraOpNumThreads(cfg.intraOpThreads);
    so.AddConfigEntry("session.intra_op.allow_spinning", cfg.spin ? "1" : "0");
    for (auto& kv : cfg.sessionConfig) so.AddConfigEntry(kv.first.c_str(), kv.second.c_str());
    if (cfg.cuda) {
      Ort::CUDAProviderOptions cuda;
      cuda.Update({{"device_id", std::to_string(cfg.deviceId)}});
      so.AppendExecutionProvider_CUDA_V2(*cuda);
    }
    session = std::make_unique<Ort::Session>(ortEnv(), model.data(), model.size(), so);
    if (cfg.cuda) {
      kvMem = std::make_unique<Ort::MemoryInfo>("Cuda", OrtDeviceAllocator, cfg.deviceId, OrtMemTypeDefault);
    } else {
      kvMem = std::make_unique<Ort::MemoryInfo>("Cpu", OrtDeviceAllocator, 0, OrtMemTypeDefault);
    }
    allocator = std::make_unique<Ort::Allocator>(*session, *kvMem);
    elemSize = cfg.fp16 ? 2 : 4;
    slotElems = static_cast<size_t>(cfg.kvHeads) * cfg.maxSeq * cfg.headDim;
    const size_t bytes = layerBytes();
    Cudart* cu = nullptr;
    if (cfg.cuda) {
      cu = &cudart();
      if (cu->handle == nullptr) throw std::runtime_error("cannot zero-fill the device KV cache: " + cu->error);
      cudaCheck(cu->setDevice(cfg.deviceId), "cudaSetDevice");
    }
    for (int l = 0; l < cfg.numLayers; l++) {
      for (auto* list : {&keys, &values}) {
        void* p = allocator->Alloc(bytes);
        if (p == nullptr) throw std::runtime_error("KV cache allocation failed");
        list->push_back(p);
        // Zero-filled, never NaN: attention kernels may read masked positions (0 x NaN = NaN).
        if (cu) cudaCheck(cu->memset(p, 0, bytes), "cudaMemset");
        else std::memset(p, 0, bytes);
      }
    }
    if (cu) cudaCheck(cu->deviceSynchronize(), "cudaDeviceSynchronize");
  }
};

struct RunSpec {
  int lo = 0, rows = 0, S = 0, T = 0;
  std::vector<int64_t> ids, mask, pos, logitRows;
  std::vector<int32_t> ids32, mask32, pos32;
  bool wantArgmax = false, wantTopk = false, wantLogits = false;
};

struct RunResult {
  std::vector<int64_t> argmax, topkIndices;
  std::vector<float> topkValues, logits;
  int64_t topk = 0, vocab = 0;
  double ms = 0;
};

Ort::Value hostInt(const Ort::MemoryInfo& cpu, std::vector<int64_t>& v64, std::vector<int32_t>& v32, bool i32,
                   const std::vector<int64_t>& shape) {
  if (i32) {
    v32.assign(v64.begin(), v64.end());
    return Ort::Value::CreateTensor<int32_t>(cpu, v32.data(), v32.size(), shape.data(), shape.size());
  }
  return Ort::Value::CreateTensor<int64_t>(cpu, v64.data(), v64.size(), shape.data(), shape.size());
}

void runLocked(Core& core, RunSpec& spec, RunResult& out) {
  if (core.released || !core.session) throw std::runtime_error("engine released");
  const Config& c = core.cfg;
  if (spec.lo < 0 || spec.rows < 1 || spec.lo + spec.rows > c.maxSlots)
    throw std::runtime_error("slot range out of bounds");
  if (spec.T > c.maxSeq) throw std::runtime_error("total sequence length exceeds the cache's maxSeq");
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU);
  Ort::IoBinding io(*core.session);
  std::vector<Ort::Value> keep;
  keep.reserve(8 + 2 * c.numLayers);
  keep.push_back(hostInt(cpu, spec.ids, spec.ids32, c.idsI32, {spec.rows, spec.S}));
  io.BindInput(c.inputIds.c_str(), keep.back());
  keep.push_back(hostInt(cpu, spec.mask, spec.mask32, c.maskI32, {spec.rows, spec.T}));
  io.BindInput(c.attentionMask.c_str(), keep.back());
  if (!c.positionIds.empty()) {
    keep.push_back(hostInt(cpu, spec.pos, spec.pos32, c.posI32, {spec.rows, spec.S}));
    io.BindInput(c.positionIds.c_str(), keep.back());
  }
  const int64_t R = static_cast<int64_t>(spec.logitRows.size());
  {
    const int64_t shape[1] = {R};
    keep.push_back(Ort::Value::CreateTensor<int64_t>(cpu, spec.logitRows.data(), spec.logitRows.size(), shape, 1));
    io.BindInput(kLogitRows, keep.back());
  }
  const int64_t kvShape[4] = {spec.rows, c.kvHeads, c.maxSeq, c.headDim};
  const size_t off = static_cast<size_t>(spec.lo) * core.slotElems * core.elemSize;
  const size_t bytes = static_cast<size_t>(spec.rows) * core.slotElems * core.elemSize;
  const auto kvType = c.fp16 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  for (int l = 0; l < c.numLayers; l++) {
    for (int which = 0; which < 2; which++) {
      char* base = static_cast<char*>(which == 0 ? core.keys[l] : core.values[l]);
      keep.push_back(Ort::Value::CreateTensor(*core.kvMem, base + off, bytes, kvShape, 4, kvType));
      // The same buffer as past and present: GroupQueryAttention's share-buffer mode.
      io.BindInput((which == 0 ? c.pastKeys[l] : c.pastValues[l]).c_str(), keep.back());
      io.BindOutput((which == 0 ? c.presentKeys[l] : c.presentValues[l]).c_str(), keep.back());
    }
  }
  std::vector<int> order;  // 0 argmax, 1 topk values, 2 topk indices, 3 logits
  if (R > 0 && spec.wantArgmax) { io.BindOutput(kArgmax, cpu); order.push_back(0); }
  if (R > 0 && spec.wantTopk) {
    io.BindOutput(kTopkValues, cpu); order.push_back(1);
    io.BindOutput(kTopkIndices, cpu); order.push_back(2);
  }
  if (R > 0 && spec.wantLogits) { io.BindOutput(kLastLogits, cpu); order.push_back(3); }
  io.SynchronizeInputs();
  Ort::RunOptions ro;
  auto t0 = std::chrono::steady_clock::now();
  core.session->Run(ro, io);
  io.SynchronizeOutputs();
  out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::vector<Ort::Value> values = io.GetOutputValues();
  // Outputs come back in binding order: the present.* bindings first, then ours.
  const size_t first = values.size() - order.size();
  for (size_t i = 0; i < order.size(); i++) {
    Ort::Value& v = values[first + i];
    auto info = v.GetTensorTypeAndShapeInfo();
    const size_t n = info.GetElementCount();
    auto shape = info.GetShape();
    switch (order[i]) {
      case 0: { const int64_t* p = v.GetTensorData<int64_t>(); out.argmax.assign(p, p + n); break; }
      case 1: {
        const float* p = v.GetTensorData<float>();
        out.topkValues.assign(p, p + n);
        out.topk = shape.size() == 2 ? shape[1] : 0;
        break;
      }
      case 2: { const int64_t* p = v.GetTensorData<int64_t>(); out.topkIndices.assign(p, p + n); break; }
      case 3: {
        const float* p = v.GetTensorData<float>();
        out.logits.assign(p, p + n);
        out.vocab = shape.size() == 2 ? shape[1] : 0;
        break;
      }
    }
  }
}

// ---------------------------------------------------------------------------
std::string str(const Napi::Object& o, const char* k, const std::string& d = "") {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : d;
}
int num(const Napi::Object& o, const char* k, int d = 0) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : d;
}
bool flag(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}
std::vector<std::string> strs(Napi::Env env, const Napi::Object& o, const char* k, int n) {
  Napi::Value v = o.Get(k);
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(k) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  if (static_cast<int>(a.Length()) != n) throw Napi::TypeError::New(env, std::string(k) + " needs one name per layer");
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<int64_t> ints(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return std::vector<int64_t>(a.Data(), a.Data() + a.ElementLength());
}

class Engine;

class CreateWorker : public Napi::AsyncWorker {
 public:
  CreateWorker(Napi::Env env, std::shared_ptr<Core> core, std::vector<uint8_t> model)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), core_(std::move(core)),
        model_(std::move(model)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(core_->mu);
      core_->create(model_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
    model_.clear();
    model_.shrink_to_fit();
  }
  void OnOK() override;
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Core> core_;
  std::vector<uint8_t> model_;
};

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, std::shared_ptr<Core> core, RunSpec spec)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), core_(std::move(core)),
        spec_(std::move(spec)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(core_->mu);
      runLocked(*core_, spec_, result_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    auto big = [&](const std::vector<int64_t>& v) {
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, v.size() * 8);
      if (!v.empty()) std::memcpy(buf.Data(), v.data(), v.size() * 8);
      return Napi::TypedArrayOf<int64_t>::New(env, v.size(), buf, 0, napi_bigint64_array);
    };
    auto f32 = [&](const std::vector<float>& v) {
      Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
      if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
      return a;
    };
    if (spec_.wantArgmax) o.Set("argmax", big(result_.argmax));
    if (spec_.wantTopk) {
      o.Set("topkValues", f32(result_.topkValues));
      o.Set("topkIndices", big(result_.topkIndices));
      o.Set("topk", Napi::Number::New(env, static_cast<double>(result_.topk)));
    }
    if (spec_.wantLogits) o.Set("logits", f32(result_.logits));
    o.Set("sessionMs", Napi::Number::New(env, result_.ms));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Core> core_;
  RunSpec spec_;
  RunResult result_;
};

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Engine",
                                   {InstanceMethod("run", &Engine::Run), InstanceMethod("readKv", &Engine::ReadKv),
                                    InstanceMethod("writeKv", &Engine::WriteKv),
                                    InstanceMethod("release", &Engine::Release),
                                    InstanceAccessor("kvBytes", &Engine::KvBytes, nullptr)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "Engine is created with createEngine()");
    core_ = *info[0].As<Napi::External<std::shared_ptr<Core>>>().Data();
  }

 private:
  std::shared_ptr<Core> core_;

  void checkLive(Napi::Env env) {
    if (!core_ || core_->released) throw Napi::Error::New(env, "engine released");
  }

  // run({lo, rows, S, T, ids, mask, positions?, logitRows, argmax, topk, logits}) -> Promise
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkLive(env);
    if (info.Length() != 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "run(spec)");
    Napi::Object o = info[0].As<Napi::Object>();
    RunSpec s;
    s.lo = num(o, "lo", -1);
    s.rows = num(o, "rows");
    s.S = num(o, "S");
    s.T = num(o, "T");
    s.ids = ints(env, o.Get("ids"), "ids");
    s.mask = ints(env, o.Get("mask"), "mask");
    if (!core_->cfg.positionIds.empty()) s.pos = ints(env, o.Get("positions"), "positions");
    s.logitRows = ints(env, o.Get("logitRows"), "logitRows");
    s.wantArgmax = flag(o, "argmax");
    s.wantTopk = flag(o, "topk");
    s.wantLogits = flag(o, "logits");
    if (s.rows < 1 || s.S < 1 || s.T < 1) throw Napi::RangeError::New(env, "rows, S and T must be positive");
    if (s.ids.size() != static_cast<size_t>(s.rows) * s.S) throw Napi::RangeError::New(env, "ids must hold rows*S");
    if (s.mask.size() != static_cast<size_t>(s.rows) * s.T) throw Napi::RangeError::New(env, "mask must hold rows*T");
    if (!core_->cfg.positionIds.empty() && s.pos.size() != s.ids.size())
      throw Napi::RangeError::New(env, "positions must hold rows*S");
    // onnxruntime's CPU TopK/ArgMax over zero rows divides by zero (SIGFPE): refuse instead.
    if (s.logitRows.empty()) throw Napi::RangeError::New(env, "run needs at least one logit row");
    for (int64_t r : s.logitRows)
      if (r < 0 || r >= static_cast<int64_t>(s.rows) * s.S) throw Napi::RangeError::New(env, "logit row out of range");
    auto* w = new RunWorker(env, core_, std::move(s));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  // Strided copy between the cache and a host array laid out [kvHeads, count, headDim].
  void copyKv(Napi::Env env, const Napi::CallbackInfo& info, bool toHost, void* host) {
    const Config& c = core_->cfg;
    const int layer = info[0].As<Napi::Number>().Int32Value();
    const int which = info[1].As<Napi::Number>().Int32Value();
    const int slot = info[2].As<Napi::Number>().Int32Value();
    const int start = info[3].As<Napi::Number>().Int32Value();
    const int count = info[4].As<Napi::Number>().Int32Value();
    if (layer < 0 || layer >= c.numLayers || (which != 0 && which != 1) || slot < 0 || slot >= c.maxSlots ||
        start < 0 || count < 0 || start + count > c.maxSeq)
      throw Napi::RangeError::New(env, "readKv/writeKv: out of range");
    std::lock_guard<std::mutex> lock(core_->mu);
    if (core_->released) throw Napi::Error::New(env, "engine released");
    char* base = static_cast<char*>(which == 0 ? core_->keys[layer] : core_->values[layer]);
    const size_t es = core_->elemSize;
    const size_t rowBytes = static_cast<size_t>(count) * c.headDim * es;
    Cudart* cu = c.cuda ? &cudart() : nullptr;
    if (cu) {
      if (cu->handle == nullptr) throw Napi::Error::New(env, "readKv/writeKv on CUDA: " + cu->error);
      // This thread may not have selected the session's device; onnxruntime's streams are
      // non-blocking, so wait for them before touching the cache from the default stream.
      cudaCheck(cu->setDevice(c.deviceId), "cudaSetDevice");
      cudaCheck(cu->deviceSynchronize(), "cudaDeviceSynchronize");
    }
    for (int h = 0; h < c.kvHeads; h++) {
      char* dev = base + ((static_cast<size_t>(slot) * c.kvHeads + h) * c.maxSeq + start) * c.headDim * es;
      char* hp = static_cast<char*>(host) + static_cast<size_t>(h) * rowBytes;
      if (cu) {
        cudaCheck(cu->memcpy(toHost ? hp : dev, toHost ? dev : hp, rowBytes,
                             toHost ? kCudaMemcpyDeviceToHost : kCudaMemcpyHostToDevice),
                  "cudaMemcpy");
      } else if (toHost) {
        std::memcpy(hp, dev, rowBytes);
      } else {
        std::memcpy(dev, hp, rowBytes);
      }
    }
  }

  // readKv(layer, 0 key | 1 value, slot, start, count) -> Float32Array | Uint16Array [kvHeads, count, headDim]
  Napi::Value ReadKv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkLive(env);
    if (info.Length() != 5) throw Napi::TypeError::New(env, "readKv(layer, which, slot, start, count)");
    const Config& c = core_->cfg;
    const int count = info[4].As<Napi::Number>().Int32Value();
    const size_t n = static_cast<size_t>(std::max(count, 0)) * c.kvHeads * c.headDim;
    if (c.fp16) {
      Napi::Uint16Array a = Napi::Uint16Array::New(env, n);
      copyKv(env, info, true, a.Data());
      return a;
    }
    Napi::Float32Array a = Napi::Float32Array::New(env, n);
    copyKv(env, info, true, a.Data());
    return a;
  }

  // writeKv(layer, which, slot, start, count, data [kvHeads, count, headDim])
  Napi::Value WriteKv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkLive(env);
    if (info.Length() != 6 || !info[5].IsTypedArray())
      throw Napi::TypeError::New(env, "writeKv(layer, which, slot, start, count, data)");
    const Config& c = core_->cfg;
    Napi::TypedArray a = info[5].As<Napi::TypedArray>();
    const int count = info[4].As<Napi::Number>().Int32Value();
    const size_t n = static_cast<size_t>(std::max(count, 0)) * c.kvHeads * c.headDim;
    const auto want = c.fp16 ? napi_uint16_array : napi_float32_array;
    if (a.TypedArrayType() != want || a.ElementLength() != n)
      throw Napi::TypeError::New(env, "writeKv: data must be a Float32Array (fp16: Uint16Array) of kvHeads*count*headDim");
    copyKv(env, info, false, static_cast<char*>(a.ArrayBuffer().Data()) + a.ByteOffset());
    return env.Undefined();
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (core_) {
      std::lock_guard<std::mutex> lock(core_->mu);  // waits for an in-flight run
      core_->releaseLocked();
    }
    return info.Env().Undefined();
  }

  Napi::Value KvBytes(const Napi::CallbackInfo& info) {
    checkLive(info.Env());
    return Napi::Number::New(info.Env(), static_cast<double>(core_->layerBytes()) * 2 * core_->cfg.numLayers);
  }
};

Napi::FunctionReference* Engine::ctor = nullptr;

void CreateWorker::OnOK() {
  Napi::Env env = Env();
  auto* holder = new std::shared_ptr<Core>(core_);
  Napi::External<std::shared_ptr<Core>> ext =
      Napi::External<std::shared_ptr<Core>>::New(env, holder, [](Napi::Env, std::shared_ptr<Core>* p) { delete p; });
  deferred_.Resolve(Engine::ctor->New({ext}));
}

// createEngine(modelBytes: Uint8Array, options) -> Promise<Engine>
Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsTypedArray() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "createEngine(modelBytes: Uint8Array, options)");
  Napi::TypedArray bytes = info[0].As<Napi::TypedArray>();
  if (bytes.TypedArrayType() != napi_uint8_array) throw Napi::TypeError::New(env, "modelBytes must be a Uint8Array");
  Napi::Object o = info[1].As<Napi::Object>();
  auto core = std::make_shared<Core>();
  Config& c = core->cfg;
  const std::string device = str(o, "device", "cpu");
  if (device != "cpu" && device != "cuda") throw Napi::TypeError::New(env, "device must be cpu or cuda");
  c.cuda = device == "cuda";
  c.deviceId = num(o, "deviceId", 0);
  c.intraOpThreads = num(o, "intraOpThreads", 0);
  c.spin = flag(o, "spinThreads");
  c.numLayers = num(o, "numLayers");
  c.kvHeads = num(o, "numKvHeads");
  c.headDim = num(o, "headDim");
  c.maxSlots = num(o, "maxSlots");
  c.maxSeq = num(o, "maxSeq");
  c.fp16 = str(o, "dtype", "fp32") == "fp16";
  if (c.numLayers < 1 || c.kvHeads < 1 || c.headDim < 1 || c.maxSlots < 1 || c.maxSeq < 1)
    throw Napi::RangeError::New(env, "numLayers, numKvHeads, headDim, maxSlots and maxSeq must be positive");
  c.inputIds = str(o, "inputIds");
  c.attentionMask = str(o, "attentionMask");
  c.positionIds = str(o, "positionIds");
  c.idsI32 = flag(o, "inputIdsInt32");
  c.maskI32 = flag(o, "attentionMaskInt32");
  c.posI32 = flag(o, "positionIdsInt32");
  c.pastKeys = strs(env, o, "pastKeys", c.numLayers);
  c.pastValues = strs(env, o, "pastValues", c.numLayers);
  c.presentKeys = strs(env, o, "presentKeys", c.numLayers);
  c.presentValues = strs(env, o, "presentValues", c.numLayers);
  Napi::Value sc = o.Get("sessionConfig");
  if (sc.IsObject()) {
    Napi::Object m = sc.As<Napi::Object>();
    Napi::Array keys = m.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      c.sessionConfig.emplace_back(k, m.Get(k).ToString().Utf8Value());
    }
  }
  std::vector<uint8_t> model(bytes.As<Napi::Uint8Array>().Data(),
                             bytes.As<Napi::Uint8Array>().Data() + bytes.ElementLength());
  auto* w = new CreateWorker(env, core, std::move(model));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  exports.Set("ortVersion", Napi::String::New(env, OrtGetApiBase()->GetVersionString()));
  exports.Set("ortApiVersion", Napi::Number::New(env, ORT_API_VERSION));
  if (api == nullptr) {
    // The loaded libonnxruntime is older than the headers: report, never crash.
    exports.Set("error", Napi::String::New(env, std::string("libonnxruntime ") + OrtGetApiBase()->GetVersionString() +
                                                    " does not provide ORT API version " +
                                                    std::to_string(ORT_API_VERSION)));
    return exports;
  }
  Ort::InitApi(api);
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine));
  exports.Set("Engine", Engine::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsinfer_native, InitAll)
