//! With the `ray` feature only: compile the C ABI shim over Ray's C++ API
//! (`src/ray/shim.cc`) and link `libray_api.so` from PyPI's `ray-cpp`.
//! Without the feature this does nothing.
//!
//! `SHOAL_RAY_CPP` names ray-cpp's `cpp` folder (with `include/` and
//! `lib/`); unset, it is found beside the `ray` package of `python3` (or
//! of `SHOAL_RAY_PYTHON`).

#[cfg(feature = "ray")]
use std::path::PathBuf;
#[cfg(feature = "ray")]
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "ray")]
    build_shim();
}

#[cfg(feature = "ray")]
fn build_shim() {
    println!("cargo:rerun-if-changed=src/ray/shim.cc");
    println!("cargo:rerun-if-env-changed=SHOAL_RAY_CPP");
    println!("cargo:rerun-if-env-changed=SHOAL_RAY_PYTHON");
    let cpp = ray_cpp_dir();
    let include = cpp.join("include");
    let lib = cpp.join("lib");
    if !lib.join("libray_api.so").exists() {
        panic!(
            "the `ray` feature needs ray-cpp 2.60: no libray_api.so in {} (pip install ray==2.60.0 ray-cpp==2.60.0, or set SHOAL_RAY_CPP to its `cpp` folder)",
            lib.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .file("src/ray/shim.cc")
        .include(&include)
        .include(include.join("ray"))
        .flag("-std=c++17")
        // libray_api.so is built with the old libstdc++ string ABI.
        .define("_GLIBCXX_USE_CXX11_ABI", "0")
        .define("BOOST_ALL_NO_LIB", None)
        .warnings(false)
        .compile("shoal_ray_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=ray_api");
    // Where this package's own binaries and tests find it at run time;
    // other crates' drivers get the folder from `LD_LIBRARY_PATH` (README).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=SHOAL_RAY_LIB_DIR={}", lib.display());
}

#[cfg(feature = "ray")]
fn ray_cpp_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHOAL_RAY_CPP") {
        return PathBuf::from(dir);
    }
    let python = std::env::var("SHOAL_RAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = "import os, ray; print(os.path.join(os.path.dirname(ray.__file__), 'cpp'))";
    match Command::new(&python).args(["-c", probe]).output() {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => panic!(
            "the `ray` feature needs ray-cpp 2.60: `{python}` has no `ray` package (pip install ray==2.60.0 ray-cpp==2.60.0, or set SHOAL_RAY_CPP)"
        ),
    }
}
