/* Run-time loader for cuBLASLt; see cublaslt_loader.h for the search order. */
#include "common.cuh"
#include "cublaslt_loader.h"

#include <dlfcn.h>
#include <glob.h>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

static std::mutex mu;
static int state = 0; /* 0 not tried, 1 loaded, -1 failed */
static int fail_code = TL_OK;
static std::string fail_msg;
static std::string loaded_path;
static void *dl = NULL;
static struct tl_cublaslt_api api_;
static tl_cublasLtHandle_t handle_ = NULL;
static void *workspace_ = NULL;
static const size_t WORKSPACE_BYTES = 32u << 20; /* 32 MiB: what cuBLAS recommends for Hopper */

static const char *SONAMES[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};

const char *tl_cublas_status_string(tl_cublasStatus_t s) {
  if (api_.GetStatusString) {
    const char *p = api_.GetStatusString(s);
    if (p) return p;
  }
  switch (s) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cublasStatus_t";
  }
}

static bool nonempty(const char *s) { return s && *s; }

/* The installation prefix of every python3 on PATH (<dir>/.. of <dir>/python3, and of the file it
 * links to when that lies elsewhere): a virtualenv's interpreter is found this way even when
 * VIRTUAL_ENV is not set, as in a non-interactive shell. */
static std::vector<std::string> python_prefixes(void) {
  std::vector<std::string> prefixes;
  const char *path = getenv("PATH");
  if (!nonempty(path)) return prefixes;
  auto parent = [](std::string dir) {
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    size_t slash = dir.rfind('/');
    return slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : dir.substr(0, slash);
  };
  auto add = [&prefixes](const std::string &p) {
    for (const std::string &q : prefixes)
      if (q == p) return;
    prefixes.push_back(p);
  };
  std::string s(path);
  for (size_t start = 0; start <= s.size();) {
    size_t end = s.find(':', start);
    if (end == std::string::npos) end = s.size();
    const std::string dir = s.substr(start, end - start);
    start = end + 1;
    if (dir.empty() || dir[0] != '/') continue; /* relative PATH entries depend on the cwd: skip */
    const std::string py = dir + "/python3";
    char real[4096];
    if (!realpath(py.c_str(), real)) continue; /* no python3 here */
    add(parent(dir) == "/" ? std::string("") : parent(dir)); /* "" + "/lib/..." for a python3 in /bin */
    const std::string other = parent(parent(real));
    add(other == "/" ? std::string("") : other);
  }
  return prefixes;
}

/* Every site-packages glob worth trying, in order. */
static std::vector<std::string> site_patterns(void) {
  std::vector<std::string> patterns;
  const char *venv = getenv("VIRTUAL_ENV"), *conda = getenv("CONDA_PREFIX"), *home = getenv("HOME");
  if (nonempty(venv)) patterns.push_back(std::string(venv) + "/lib/python3*/site-packages");
  if (nonempty(conda)) patterns.push_back(std::string(conda) + "/lib/python3*/site-packages");
  for (const std::string &prefix : python_prefixes()) {
    patterns.push_back(prefix + "/lib/python3*/site-packages");
    patterns.push_back(prefix + "/lib/python3*/dist-packages");
  }
  if (nonempty(home)) patterns.push_back(std::string(home) + "/.local/lib/python3*/site-packages");
  /* virtualenvs and conda installs under /opt (e.g. a PyTorch image's /opt/torch/.venv) */
  patterns.push_back("/opt/*/.venv/lib/python3*/site-packages");
  patterns.push_back("/opt/*/venv/lib/python3*/site-packages");
  patterns.push_back("/opt/*/lib/python3*/site-packages");
  patterns.push_back("/usr/local/lib/python3*/site-packages");
  patterns.push_back("/usr/local/lib/python3*/dist-packages");
  patterns.push_back("/usr/lib/python3*/site-packages");
  patterns.push_back("/usr/lib/python3*/dist-packages");
  return patterns;
}

static std::vector<std::string> candidate_dirs(void) {
  std::vector<std::string> dirs;
  const char *cuda_home = getenv("CUDA_HOME"), *cuda_path = getenv("CUDA_PATH");
  if (nonempty(cuda_home)) dirs.push_back(std::string(cuda_home) + "/lib64");
  if (nonempty(cuda_path)) dirs.push_back(std::string(cuda_path) + "/lib64");
  dirs.push_back("/usr/local/cuda/lib64");
  dirs.push_back(""); /* the dynamic loader's own search: LD_LIBRARY_PATH, ld.so.cache, /usr/lib */

  std::vector<std::string> sites;
  const char *explicit_sites = getenv("TINYLLAMA_PYTHON_SITE");
  if (nonempty(explicit_sites)) {
    std::string s(explicit_sites);
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      if (end > start) sites.push_back(s.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const std::string &pat : site_patterns()) {
    glob_t g;
    memset(&g, 0, sizeof g);
    if (glob(pat.c_str(), GLOB_ONLYDIR, NULL, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++) sites.push_back(g.gl_pathv[i]);
    globfree(&g);
  }
  std::vector<std::string> seen; /* a site reached twice (VIRTUAL_ENV and PATH, /lib and /usr/lib) is tried once */
  for (const std::string &site : sites) {
    char real[4096];
    const std::string key = realpath(site.c_str(), real) ? std::string(real) : site;
    bool dup = false;
    for (const std::string &q : seen) dup = dup || q == key;
    if (dup) continue;
    seen.push_back(key);
    dirs.push_back(site + "/nvidia/cublas/lib");
    dirs.push_back(site + "/nvidia/cu13/lib");
  }
  return dirs;
}

static bool try_open(const std::string &path, std::string &tried) {
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) {
    dl = h;
    loaded_path = path;
    return true;
  }
  const char *err = dlerror();
  tried += "\n  " + path + ": " + (err ? err : "dlopen failed");
  return false;
}

static bool open_library(std::string &tried) {
#ifdef TL_CUDA_EMU
  /* The CPU emulator (tests) passes host pointers: never hand them to a real cuBLASLt. */
  tried += "\n  (CUDA emulator build: cuBLASLt is never loaded)";
  return false;
#endif
  const char *explicit_path = getenv("TINYLLAMA_CUBLASLT");
  if (nonempty(explicit_path)) return try_open(explicit_path, tried);
  for (const std::string &dir : candidate_dirs())
    for (const char *so : SONAMES) {
      if (dir.empty()) {
        if (try_open(so, tried)) return true;
      } else {
        std::string path = dir + "/" + so;
        FILE *f = fopen(path.c_str(), "rb"); /* skip absent files quietly: keeps the error short */
        if (!f) continue;
        fclose(f);
        if (try_open(path, tried)) return true;
      }
    }
  return false;
}

template <typename F> static bool bind_symbol(F &fn, const char *name, std::string &missing) {
  fn = reinterpret_cast<F>(dlsym(dl, name));
  if (!fn) missing += std::string(" ") + name;
  return fn != NULL;
}

static int load_locked(void) {
  std::string tried;
  if (!open_library(tried)) {
    std::vector<std::string> dirs = candidate_dirs();
    std::string where;
    const char *explicit_path = getenv("TINYLLAMA_CUBLASLT");
    if (nonempty(explicit_path)) where = std::string("\n  $TINYLLAMA_CUBLASLT = ") + explicit_path;
    else {
      for (const std::string &d : dirs) where += "\n  " + (d.empty() ? std::string("(system library path)") : d);
      where += "\n  (Python site-packages globbed from:";
      for (const std::string &p : site_patterns()) where += " " + p;
      where += ")";
    }
    fail_code = TL_ERR_UNSUPPORTED;
    fail_msg = "cuBLASLt (libcublasLt.so.13/.12) was not found; the CUDA matmuls need it. Looked in:" + where +
               (tried.empty() ? std::string("") : "\nload errors:" + tried) +
               "\nInstall it (e.g. `pip install nvidia-cublas` or the CUDA toolkit's libcublas package), or point "
               "TINYLLAMA_CUBLASLT at the file or TINYLLAMA_PYTHON_SITE at a site-packages directory.";
    return fail_code;
  }
  std::string missing;
  bind_symbol(api_.Create, "cublasLtCreate", missing);
  bind_symbol(api_.Destroy, "cublasLtDestroy", missing);
  bind_symbol(api_.MatmulDescCreate, "cublasLtMatmulDescCreate", missing);
  bind_symbol(api_.MatmulDescDestroy, "cublasLtMatmulDescDestroy", missing);
  bind_symbol(api_.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute", missing);
  bind_symbol(api_.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate", missing);
  bind_symbol(api_.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy", missing);
  bind_symbol(api_.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate", missing);
  bind_symbol(api_.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy", missing);
  bind_symbol(api_.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute", missing);
  bind_symbol(api_.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic", missing);
  bind_symbol(api_.Matmul, "cublasLtMatmul", missing);
  if (!missing.empty()) {
    fail_code = TL_ERR_UNSUPPORTED;
    fail_msg = loaded_path + " lacks the functions:" + missing;
    return fail_code;
  }
  api_.GetStatusString = reinterpret_cast<const char *(*)(tl_cublasStatus_t)>(dlsym(dl, "cublasLtGetStatusString"));
  api_.GetVersion = reinterpret_cast<size_t (*)(void)>(dlsym(dl, "cublasLtGetVersion"));
  if (api_.GetVersion) loaded_path += " (version " + std::to_string(api_.GetVersion()) + ")";

  tl_cublasStatus_t s = api_.Create(&handle_);
  if (s != 0) {
    fail_code = TL_ERR_BACKEND;
    fail_msg = "cublasLtCreate failed: " + std::string(tl_cublas_status_string(s)) + " (" + loaded_path + ")";
    return fail_code;
  }
  cudaError_t e = cudaMalloc(&workspace_, WORKSPACE_BYTES);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    workspace_ = NULL;
    fail_code = TL_ERR_BACKEND;
    fail_msg = std::string("cuBLASLt workspace: cudaMalloc failed: ") + cudaGetErrorString(e);
    return fail_code;
  }
  return TL_OK;
}

int tl_cublaslt_get(const struct tl_cublaslt_api **api, tl_cublasLtHandle_t *handle, void **workspace,
                    size_t *workspace_bytes) {
  std::lock_guard<std::mutex> lock(mu);
  if (state == 0) state = load_locked() == TL_OK ? 1 : -1;
  if (state < 0) return tl_fail(fail_code, "%s", fail_msg.c_str());
  *api = &api_;
  *handle = handle_;
  *workspace = workspace_;
  *workspace_bytes = WORKSPACE_BYTES;
  return TL_OK;
}

const char *tl_cublaslt_describe(void) {
  std::lock_guard<std::mutex> lock(mu);
  if (state == 0) return "not loaded yet";
  if (state < 0) return "unavailable";
  return loaded_path.c_str();
}

int tl_cublaslt_tf32(void) {
  static int cached = -1;
  if (cached < 0) {
    const char *s = getenv("TINYLLAMA_TF32");
    cached = (s && *s && strcmp(s, "0") != 0) ? 1 : 0;
  }
  return cached;
}
