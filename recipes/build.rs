//! Finds the tools some tests need and tells them through cfgs, so that
//! cargo reports a test that cannot run here as ignored, with its reason:
//!
//! * `python`: a Python with the packages of `tests/python/requirements.txt`
//!   (`$FLIGHT_COOKBOOK_PYTHON`, else `.venv/bin/python`, else `python3`);
//!   its path is `FLIGHT_COOKBOOK_PYTHON_FOUND`;
//! * `mdbook`: mdbook 0.5.4 on the PATH, and Chromium (`/usr/bin/chromium`);
//! * `flight_sql_client`: arrow-flight's command line client on the PATH.
//!
//! With `CI=true` a missing tool fails the build: CI skips nothing.

use std::path::Path;
use std::process::Command;

const IMPORTS: &str = "import pyarrow, pyarrow.flight, grpc, grpc_health, adbc_driver_flightsql, \
                       adbc_driver_manager, playwright";

const INSTALL_CLI: &str = "cargo install arrow-flight --version 60.1.0 \
                           --features cli,flight-sql,tls-ring --bin flight_sql_client";

fn main() {
    let root = Path::new("..");
    println!("cargo:rerun-if-env-changed=FLIGHT_COOKBOOK_PYTHON");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=../tests/python/requirements.txt");
    // Watching a file that does not exist makes cargo run this again on
    // every build: so a tool installed later is found (only where one is
    // missing, and at the price of rebuilding this package's tests).
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| path.exists())
            .unwrap_or_else(|| root.join(format!("no-{name}-on-the-path")))
    };
    let watched = [
        root.join(".venv/pyvenv.cfg"),
        on_path("mdbook"),
        on_path("flight_sql_client"),
        Path::new("/usr/bin/chromium").to_path_buf(),
    ];
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-check-cfg=cfg(python)");
    println!("cargo:rustc-check-cfg=cfg(mdbook)");
    println!("cargo:rustc-check-cfg=cfg(flight_sql_client)");
    let ci = std::env::var("CI").is_ok_and(|ci| !ci.is_empty());
    let mut missing = Vec::new();

    match python(root) {
        Ok(python) => {
            println!("cargo:rustc-cfg=python");
            println!("cargo:rustc-env=FLIGHT_COOKBOOK_PYTHON_FOUND={python}");
        }
        Err(why) => missing.push(why),
    }
    let mdbook = Command::new("mdbook").arg("--version").output();
    let mdbook = mdbook.is_ok_and(|o| o.stdout.starts_with(b"mdbook v0.5.4"));
    let chromium = Path::new("/usr/bin/chromium").exists();
    if mdbook && chromium {
        println!("cargo:rustc-cfg=mdbook");
    } else {
        missing.push("mdbook 0.5.4 or /usr/bin/chromium is missing".to_string());
    }
    let cli = Command::new("flight_sql_client").arg("--help").output();
    if cli.is_ok_and(|o| o.status.success()) {
        println!("cargo:rustc-cfg=flight_sql_client");
    } else {
        missing.push(format!("flight_sql_client is missing ({INSTALL_CLI})"));
    }
    for why in &missing {
        if ci {
            panic!("CI skips no test, but {why}; .ci/run installs everything");
        }
        println!("cargo:warning=some tests are ignored: {why}");
    }
}

fn python(root: &Path) -> Result<String, String> {
    let venv = root.join(".venv/bin/python");
    let python = match std::env::var("FLIGHT_COOKBOOK_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ if venv.exists() => std::path::absolute(&venv)
            .map_err(|e| e.to_string())?
            .display()
            .to_string(),
        _ => "python3".to_string(),
    };
    let output = Command::new(&python).args(["-c", IMPORTS]).output();
    match output {
        Ok(output) if output.status.success() => Ok(python),
        _ => Err(format!(
            "`{python}` cannot `{IMPORTS}` (python3 -m venv .venv && \
             .venv/bin/pip install -r tests/python/requirements.txt)"
        )),
    }
}
