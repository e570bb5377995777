//! Stamps the binary with the source revision it was built from, for `litellm-operator --version`.
//!
//! `LITELLM_OPERATOR_REVISION` wins (image builds, where the build context has no `.git`); otherwise
//! `git rev-parse --short HEAD`; outside a git checkout, `unknown`. Cargo reruns this script only when the variable,
//! `HEAD` or the branch `HEAD` points to changes, so a commit refreshes the revision without rebuilding every time.

use std::path::{Path, PathBuf};
use std::process::Command;

const REVISION_VAR: &str = "LITELLM_OPERATOR_REVISION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={REVISION_VAR}");
    let revision = match std::env::var(REVISION_VAR) {
        Ok(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => {
            watch_git();
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env={REVISION_VAR}={revision}");
}

/// `git ARGS` in this crate's directory: its trimmed output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// Asks cargo to rerun when HEAD moves: `HEAD` itself (a checkout), and the branch it names (a commit), which is a
/// loose ref file or, once packed, a line of `packed-refs`. Only existing paths are named: cargo reruns on every
/// build for a path that does not exist. A branch not yet written as a loose file is watched through its folder.
fn watch_git() {
    // Both may be relative to this crate's directory (`../../.git`); a worktree has its own HEAD but shares refs.
    let (Some(here), Some(git_dir), Some(common_dir)) = (
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return;
    };
    let git_dir = here.join(git_dir);
    let common_dir = here.join(common_dir);
    let head = git_dir.join("HEAD");
    watch(&head);
    let Some(branch) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref:").map(|r| r.trim().to_owned()))
    else {
        return; // A detached HEAD holds the commit itself.
    };
    watch(&common_dir.join("packed-refs"));
    let loose = common_dir.join(&branch);
    if loose.is_file() {
        watch(&loose);
    } else if let Some(folder) = loose.ancestors().skip(1).find(|p| p.is_dir()) {
        watch(folder);
    }
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
