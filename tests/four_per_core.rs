//! Most tests mostly wait: for a program they started, a server, Python. So
//! a test program that includes this file runs four tests per core, unless
//! `RUST_TEST_THREADS` or `--test-threads` says how many. libtest reads the
//! variable in `main`; a function of `.init_array` runs before it (on
//! Linux; elsewhere libtest's default, one per core, holds).

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static FOUR_PER_CORE: extern "C" fn() = four_per_core;

#[cfg(target_os = "linux")]
extern "C" fn four_per_core() {
    if std::env::var_os("RUST_TEST_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: before `main`, no other thread reads the environment.
        unsafe { std::env::set_var("RUST_TEST_THREADS", (4 * cores).to_string()) };
    }
}
