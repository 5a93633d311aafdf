//! The published Python client (`ahnlich-client-py==0.4.2`) run against a server by
//! `tests/python/client_py_compat.py`.

/// Whether python3 with the client is here. Without it a test skips, loudly, except under CI
/// (which installs it in `.ci/run`), where its absence is a failure.
pub fn client_installed_or_skip() -> bool {
    installed_or_skip("ahnlich_client_py, grpclib", "ahnlich-client-py==0.4.2")
}

/// Whether python3 can import `modules` (the pip package `package`). Without them a test
/// skips, loudly, except under CI (which installs them in `.ci/run`), where that is a failure.
pub fn installed_or_skip(modules: &str, package: &str) -> bool {
    let installed = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(std::env::var_os("CI").is_none(), "CI must install {package}");
        eprintln!("SKIPPED: python3 with {package} is not installed");
    }
    installed
}

/// Runs the Python client's checks against `addr`; panics with its report, prefixed by
/// `failure`, unless all of them pass.
pub async fn run_checks(addr: &str, failure: &str) {
    run_checks_with(addr, &[], failure).await
}

/// As [`run_checks`], with more arguments for the script (`--ca FILE`, `--auth USER:KEY`).
pub async fn run_checks_with(addr: &str, args: &[&str], failure: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_py_compat.py");
    let out =
        tokio::process::Command::new("python3").arg(script).arg(addr).args(args).output().await.expect("run python");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{failure}:\n{report}");
    assert!(report.contains("all checks passed"), "{report}");
}
