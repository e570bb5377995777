//! Conformance with Google's Python client libraries (REST transport): runs the pytest suite in
//! `tests/conformance/` against an in-process emulator. The interpreter is `$LITELLM_PYTHON`, by default
//! `.venv/bin/python` at the workspace root, with `tests/conformance/requirements.txt` installed (`make venv`).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The number project `p` gets, as Google would have assigned it; the suite expects it in Secret Manager names.
const P_NUMBER: u64 = 123456789;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_python_clients_pass_the_conformance_suite() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let python = std::env::var_os("LITELLM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "No Python for the emulator conformance suite at {}: run `make venv` (a virtualenv at .venv with \
         crates/gcp-emulator/tests/conformance/requirements.txt installed) or set LITELLM_PYTHON",
        python.display()
    );
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: Duration::from_millis(50),
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    emu.state().set_project_number("p", P_NUMBER).unwrap();
    let out = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(manifest.join("tests/conformance"))
        .env("EMULATOR_URL", emu.url())
        .env("EMULATOR_PROJECT_NUMBER", P_NUMBER.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make venv`", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named") && !stdout.contains("No module named"),
        "The conformance requirements are not installed in {}: run `make venv`\n{stdout}\n{stderr}",
        python.display()
    );
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(emu.state().call_count("SecretManagerService.AccessSecretVersion") >= 2);
    assert!(
        emu.state().call_count("Operations.GetOperation") + emu.state().call_count("Services.CreateService")
            >= 2
    );
}
