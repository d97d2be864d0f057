//! Every Rust block of the book as a test: skeptic compiles each one, and
//! runs each one that runs (see `build.rs`); `src/check.rs` checks what it
//! printed.

#[path = "../src/book.rs"]
#[allow(dead_code)]
mod book;
#[path = "../src/check.rs"]
mod check;
#[path = "../src/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::panic;
use std::sync::Once;

include!(concat!(env!("OUT_DIR"), "/skeptic-tests.rs"));

#[path = "four_per_core.rs"]
mod four_per_core;

fn run_snippet(root: &str, out: &str, target: &str, code: &str) {
    quiet_command_lines();
    check::run_snippet(root, out, target, code);
}

fn check_snippet(root: &str, out: &str, target: &str, code: &str) {
    quiet_command_lines();
    check::check_snippet(root, out, target, code);
}

/// skeptic fails a test with the whole rustc command line (tens of KB);
/// what went wrong is already printed above it, by rustc or by the harness.
fn quiet_command_lines() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<String>();
            match message.and_then(|m| m.strip_prefix("Command failed:\n")) {
                Some(command) if command.contains("rustc") => {
                    eprintln!(
                        "the block does not compile: rustc's errors are above"
                    )
                }
                Some(_) => eprintln!(
                    "the block's program failed: the report above says why"
                ),
                None => default(info),
            }
        }));
    });
}
