//! A bench process's memory set up as `serve` sets up its own (`ahnlich_raft::process`), so
//! what a bench measures in process runs as it would in the server.

/// Turns transparent huge pages off for this process, as `serve` does by default; with
/// `AHNLICH_RAFT_ALLOW_TRANSPARENT_HUGE_PAGES=true` (the server's flag, which takes only `true`
/// or `false`) leaves them as the system sets them, to compare the two.
pub fn as_in_the_server() {
    let allowed = std::env::var("AHNLICH_RAFT_ALLOW_TRANSPARENT_HUGE_PAGES").is_ok_and(|v| v == "true");
    if !allowed && let Err(e) = ahnlich_raft::process::disable_transparent_huge_pages() {
        eprintln!("transparent huge pages stay as the system sets them: {e}");
    }
}
