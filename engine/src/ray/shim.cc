// The C ABI between shoal and Ray's C++ API (`libray_api.so` of PyPI's
// `ray-cpp`), built by `engine/build.rs` with the `ray` feature only.
//
// It keeps C++ templates and exceptions out of Rust: every entry point
// catches what Ray throws and answers a status code, with the message in
// `err`. Buffers it hands out are `malloc`ed; Rust frees them with
// `shoal_ray_free`.
//
// Two singletons of the C++ API are header-inline (a copy in every library
// that includes them): the function manager and the runtime holder. Both
// are reached here through what `libray_api.so` exports, never through the
// headers' inline copies, so a driver and a worker library see the ones
// Ray's own code fills.

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <ray/api.h>

// Exported by libray_api.so (task_executor.cc), not declared in its headers.
namespace ray {
namespace internal {
FunctionManager &GetFunctionManager();
}  // namespace internal
}  // namespace ray

namespace {

using ray::internal::ArgsBufferList;
using ray::internal::RayRuntime;

struct ShoalBuf {
  char *ptr;
  size_t len;
};

struct ShoalArg {
  const char *ptr;
  size_t len;
  int by_ref;
};

enum Status {
  OK = 0,
  TASK_FAILED = 1,
  WORKER_DIED = 2,
  ACTOR_DIED = 3,
  OBJECT_LOST = 4,
  TIMEOUT = 5,
  RAY_ERROR = 6,
  NOT_FOUND = 7,
};

void fill(ShoalBuf *out, const char *data, size_t len) {
  out->ptr = static_cast<char *>(std::malloc(len == 0 ? 1 : len));
  if (out->ptr == nullptr) {
    out->len = 0;
    return;
  }
  if (len != 0) std::memcpy(out->ptr, data, len);
  out->len = len;
}

void fill(ShoalBuf *out, const std::string &s) { fill(out, s.data(), s.size()); }

// A submission's answer: Ray answers a nil id (all 0xff) where it refused one.
void fill_id(ShoalBuf *out, const std::string &id) {
  bool nil = !id.empty();
  for (char c : id) nil = nil && static_cast<unsigned char>(c) == 0xff;
  if (id.empty() || nil) throw std::runtime_error("Ray refused the submission");
  fill(out, id);
}

// libray_api.so's own runtime holder (its exported instance, not an inline copy).
std::shared_ptr<RayRuntime> runtime() {
  static void *holder =
      dlsym(RTLD_DEFAULT, "_ZZN3ray8internal16RayRuntimeHolder8InstanceEvE8instance");
  if (holder == nullptr) throw std::runtime_error("libray_api.so's runtime holder is not loaded");
  return static_cast<ray::internal::RayRuntimeHolder *>(holder)->Runtime();
}

std::shared_ptr<RayRuntime> live_runtime() {
  auto rt = runtime();
  if (!rt) throw std::runtime_error("Ray is not initialized in this process");
  return rt;
}

// Run `body`, turning what Ray throws into a status and a message.
int guarded(ShoalBuf *err, const std::function<void()> &body) {
  try {
    body();
    return OK;
  } catch (const ray::internal::RayWorkerException &e) {
    fill(err, e.what());
    return WORKER_DIED;
  } catch (const ray::internal::RayActorException &e) {
    fill(err, e.what());
    return ACTOR_DIED;
  } catch (const ray::internal::UnreconstructableException &e) {
    fill(err, e.what());
    return OBJECT_LOST;
  } catch (const ray::internal::RayTimeoutException &e) {
    fill(err, e.what());
    return TIMEOUT;
  } catch (const ray::internal::RayFunctionNotFound &e) {
    fill(err, e.what());
    return NOT_FOUND;
  } catch (const ray::internal::RayTaskException &e) {
    fill(err, e.what());
    return TASK_FAILED;
  } catch (const std::exception &e) {
    fill(err, e.what());
    return RAY_ERROR;
  } catch (...) {
    fill(err, std::string("an unknown C++ exception"));
    return RAY_ERROR;
  }
}

std::vector<ray::internal::TaskArg> task_args(const ShoalArg *args, size_t n) {
  std::vector<ray::internal::TaskArg> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) {
    ray::internal::TaskArg arg;
    if (args[i].by_ref) {
      arg.id = std::string(args[i].ptr, args[i].len);
    } else {
      msgpack::sbuffer buf(args[i].len);
      buf.write(args[i].ptr, args[i].len);
      arg.buf = std::move(buf);
    }
    out.push_back(std::move(arg));
  }
  return out;
}

// What a task or an actor holds: `n` resources named `names`, `amounts` of each.
std::unordered_map<std::string, double> resources(const char *const *names, const double *amounts, size_t n) {
  std::unordered_map<std::string, double> out;
  for (size_t i = 0; i < n; i++) out[names[i]] = amounts[i];
  return out;
}

// How a worker library runs one registered function (see `shoal_ray_register`).
typedef int (*ShoalExec)(const char *name, const ShoalArg *args, size_t n, void *actor, ShoalBuf *out);

msgpack::sbuffer run(const std::string &name, ShoalExec exec, const ArgsBufferList &args, void *actor) {
  std::vector<ShoalArg> raw;
  raw.reserve(args.size());
  for (const auto &a : args) raw.push_back(ShoalArg{a.data(), a.size(), 0});
  ShoalBuf out{nullptr, 0};
  int rc = exec(name.c_str(), raw.data(), raw.size(), actor, &out);
  if (rc != OK) {
    std::string message(out.ptr == nullptr ? "" : std::string(out.ptr, out.len));
    std::free(out.ptr);
    throw std::runtime_error(message);
  }
  msgpack::sbuffer result(out.len);
  if (out.ptr != nullptr) result.write(out.ptr, out.len);
  std::free(out.ptr);
  return result;
}

}  // namespace

extern "C" {

void shoal_ray_free(ShoalBuf *buf) noexcept {
  std::free(buf->ptr);
  buf->ptr = nullptr;
  buf->len = 0;
}

// `node_ip`: this host's address as the cluster knows it ("": Ray's guess).
int shoal_ray_init(const char *address, const char *code_search_path, const char *node_ip, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    ray::RayConfig config;
    config.address = address;
    if (code_search_path[0] != '\0') config.code_search_path.push_back(code_search_path);
    std::string program = "shoal";
    std::string ip_flag = std::string("--ray_node_ip_address=") + node_ip;
    std::vector<char *> argv = {program.data()};
    if (node_ip[0] != '\0') argv.push_back(ip_flag.data());
    ray::Init(config, static_cast<int>(argv.size()), argv.data());
  });
}

int shoal_ray_initialized() noexcept {
  try {
    return runtime() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

void shoal_ray_shutdown() noexcept {
  try {
    ray::Shutdown();
  } catch (...) {
  }
}

int shoal_ray_put(const char *data, size_t len, ShoalBuf *id, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto buf = std::make_shared<msgpack::sbuffer>(len);
    buf->write(data, len);
    fill(id, live_runtime()->Put(buf));
  });
}

int shoal_ray_get(const char *id, size_t id_len, ShoalBuf *data, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto found = live_runtime()->Get(std::string(id, id_len));
    fill(data, found->data(), found->size());
  });
}

int shoal_ray_wait(const ShoalArg *ids, size_t n, int num_objects, int timeout_ms, unsigned char *ready,
                   ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    std::vector<std::string> list;
    list.reserve(n);
    for (size_t i = 0; i < n; i++) list.emplace_back(ids[i].ptr, ids[i].len);
    auto done = live_runtime()->Wait(list, num_objects, timeout_ms);
    for (size_t i = 0; i < n && i < done.size(); i++) ready[i] = done[i] ? 1 : 0;
  });
}

void shoal_ray_add_ref(const char *id, size_t len) noexcept {
  try {
    if (auto rt = runtime()) rt->AddLocalReference(std::string(id, len));
  } catch (...) {
  }
}

void shoal_ray_remove_ref(const char *id, size_t len) noexcept {
  try {
    if (auto rt = runtime()) rt->RemoveLocalReference(std::string(id, len));
  } catch (...) {
  }
}

int shoal_ray_call(const char *name, const ShoalArg *args, size_t n, const char *const *res_names,
                   const double *res_amounts, size_t n_res, ShoalBuf *id, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto list = task_args(args, n);
    ray::internal::CallOptions options;
    options.resources = resources(res_names, res_amounts, n_res);
    fill_id(id, live_runtime()->Call(ray::internal::RemoteFunctionHolder(std::string(name)), list, options));
  });
}

int shoal_ray_create_actor(const char *constructor, const ShoalArg *args, size_t n, const char *const *res_names,
                           const double *res_amounts, size_t n_res, int max_restarts, const char *actor_name,
                           ShoalBuf *id, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto list = task_args(args, n);
    ray::internal::ActorCreationOptions options;
    options.resources = resources(res_names, res_amounts, n_res);
    options.max_restarts = max_restarts;
    options.name = actor_name;
    fill(id, live_runtime()->CreateActor(ray::internal::RemoteFunctionHolder(std::string(constructor)), list,
                                         options));
  });
}

int shoal_ray_call_actor(const char *method, const char *actor, size_t actor_len, const ShoalArg *args, size_t n,
                         ShoalBuf *id, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto list = task_args(args, n);
    ray::internal::CallOptions options;
    fill_id(id, live_runtime()->CallActor(ray::internal::RemoteFunctionHolder(std::string(method)),
                                          std::string(actor, actor_len), list, options));
  });
}

int shoal_ray_get_actor(const char *name, ShoalBuf *id, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto rt = live_runtime();
    fill(id, rt->GetActorId(name, rt->GetNamespace()));
  });
}

int shoal_ray_kill_actor(const char *actor, size_t len, ShoalBuf *err) noexcept {
  return guarded(err, [&] { live_runtime()->KillActor(std::string(actor, len), true); });
}

// Register `name` in libray_api.so's function manager, run by `exec`:
// kind 0 a function, 1 an actor's constructor (its answer is the state
// pointer's 8 bytes, which Ray hands back to each method), 2 a method.
int shoal_ray_register(const char *name, int kind, ShoalExec exec, ShoalBuf *err) noexcept {
  return guarded(err, [&] {
    auto &manager = ray::internal::GetFunctionManager();
    auto maps = manager.GetRemoteFunctions();
    std::string key(name);
    bool added;
    if (kind == 2) {
      // The manager hands out const references to its own (non-const) maps.
      auto &methods = const_cast<ray::internal::RemoteMemberFunctionMap_t &>(maps.second);
      added = methods
                  .emplace(key,
                           [key, exec](msgpack::sbuffer *actor, const ArgsBufferList &args) {
                             void *state = nullptr;
                             if (actor == nullptr || actor->size() != sizeof(state))
                               throw std::runtime_error("no actor state for " + key);
                             std::memcpy(&state, actor->data(), sizeof(state));
                             return run(key, exec, args, state);
                           })
                  .second;
    } else {
      auto &functions = const_cast<ray::internal::RemoteFunctionMap_t &>(maps.first);
      added = functions
                  .emplace(key, [key, exec](const ArgsBufferList &args) { return run(key, exec, args, nullptr); })
                  .second;
    }
    if (!added) throw std::runtime_error("registered twice: " + key);
  });
}

}  // extern "C"
