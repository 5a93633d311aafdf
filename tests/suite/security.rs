//! A secured cluster of real `serve` processes, made from the files `ahnlich-raft cert`
//! writes: both published clients work over TLS with upstream Ahnlich's credentials; wrong,
//! missing and short keys, clear-text clients and certificates of another CA are refused; the
//! operator CLI needs the CA's certificate; SIGHUP re-reads the users file. Also the safe
//! default: no TLS, no listening beyond loopback unless `--insecure`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::procs::{Proc, ProcRoot, eventually, free_addr, start_three};
use crate::support::rust_client::{call_all_23_rpcs, with_auth};
use ahnlich_client_rs::db::DbClient;
use ahnlich_raft::server::auth::hash_api_key;
use ahnlich_types::db::query as q;
use ahnlich_types::services::db_service::db_service_client::DbServiceClient;

const BIN: &str = env!("CARGO_BIN_EXE_ahnlich-raft");
const ALICE: &str = "alice:alice-key-0123456789";
const BOB: &str = "bob:bob-key-0123456789ab";

/// Runs the binary with `args`; returns whether it succeeded and what it printed.
fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run ahnlich-raft");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn users_file(users: &[&str]) -> String {
    let mut text = String::from("[users]\n");
    for u in users {
        let (name, key) = u.split_once(':').expect("user:key");
        text += &format!("{name} = \"{}\"\n", hash_api_key(key));
    }
    text
}

/// A tonic 0.12 channel (the published client's) to `addr` over TLS with the cluster CA.
async fn tls_channel(addr: &str, ca: &Path) -> tonic012::transport::Channel {
    let ca = tonic012::transport::Certificate::from_pem(std::fs::read(ca).expect("ca"));
    let tls = tonic012::transport::ClientTlsConfig::new().ca_certificate(ca).domain_name("127.0.0.1");
    tonic012::transport::Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS connection")
}

/// The published client on a TLS channel, with `auth` (`user:key`) if given.
async fn client(addr: &str, ca: &Path, auth: Option<&str>) -> DbClient {
    let mut c = DbClient::new_with_channel(tls_channel(addr, ca).await);
    if let Some(auth) = auth {
        c.set_auth_token(auth.to_string());
    }
    c
}

/// The code and message a `ping` as `auth` gets from the node at `addr`.
async fn ping_refusal(addr: &str, ca: &Path, auth: Option<&str>) -> (tonic012::Code, String) {
    let mut raw = DbServiceClient::new(tls_channel(addr, ca).await);
    let s = raw.ping(with_auth(q::Ping {}, auth)).await.expect_err("refused");
    (s.code(), s.message().to_string())
}

/// `cluster status` of the node at `addr` with `tls` flags, as the operator CLI prints it.
fn cluster_status(addr: &str, tls: &[&str]) -> (bool, String) {
    let mut args = vec!["cluster", "--addr", addr];
    args.extend_from_slice(tls);
    args.push("status");
    run(&args)
}

/// The members listed by `cluster status` (indented lines: id, role, address).
fn member_roles(status: &str) -> Vec<(u64, String)> {
    status
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_secured_with_the_cert_commands_serves_authenticated_clients_only() {
    let root = ProcRoot::new();
    let certs = root.path().join("certs");
    let certs_s = certs.to_str().expect("utf-8 path");
    for cmd in [&["create-ca"][..], &["create-node", "127.0.0.1", "--host", "localhost"], &["create-client"]] {
        let mut args = vec!["cert", "--certs-dir", certs_s];
        args.extend_from_slice(cmd);
        let (ok, out) = run(&args);
        assert!(ok, "cert {cmd:?}: {out}");
    }
    let users = root.path().join("auth.toml");
    std::fs::write(&users, users_file(&[ALICE])).expect("users");
    let users_s = users.to_str().expect("utf-8 path");
    let mut nodes = start_three(root.path(), &["--certs-dir", certs_s, "--enable-auth", "--auth-config", users_s]);
    let operator = ["--certs-dir", certs_s];

    // The operator CLI, with the CA's client certificate, sees three voters agreeing on a leader.
    let n1 = nodes[0].addr.to_string();
    let (status, members) = eventually(Duration::from_secs(30), "three voters", || async {
        let (ok, out) = cluster_status(&n1, &operator);
        let members = member_roles(&out);
        (ok && members.len() == 3 && members.iter().all(|(_, r)| r == "voter" || r == "leader"))
            .then_some((out, members))
    })
    .await;
    assert!(status.contains("\ncluster "), "status names the cluster id: {status}");
    let leader = members.iter().find(|(_, r)| r == "leader").map(|(id, _)| *id).expect("a leader");
    let follower = nodes.iter().find(|n| n.id != leader).expect("a follower");
    let addr = follower.addr.to_string();
    let ca = certs.join("ca.crt");

    // Without a certificate, or with one from another CA, the CLI is refused.
    let (ok, out) = cluster_status(&addr, &[]);
    assert!(!ok, "clear text to a TLS port: {out}");
    let (ok, out) = cluster_status(
        &addr,
        &["--ca", ca.to_str().expect("utf-8"), "--cert", "/nonexistent", "--key", "/nonexistent"],
    );
    assert!(!ok && out.contains("/nonexistent"), "missing files are named: {out}");
    let foreign = root.path().join("foreign");
    let foreign_s = foreign.to_str().expect("utf-8 path");
    for cmd in ["create-ca", "create-client"] {
        assert!(run(&["cert", "--certs-dir", foreign_s, cmd]).0, "foreign {cmd}");
    }
    let (fcert, fkey) = (foreign.join("client.crt"), foreign.join("client.key"));
    let foreign_client = [
        "--ca",
        ca.to_str().expect("utf-8"),
        "--cert",
        fcert.to_str().expect("utf-8"),
        "--key",
        fkey.to_str().expect("utf-8"),
    ];
    let (ok, out) = cluster_status(&addr, &foreign_client);
    assert!(!ok, "a client certificate of another CA is refused: {out}");

    // The published Rust client over TLS with credentials: all 23 RPCs through a follower.
    let c = client(&addr, &ca, Some(ALICE)).await;
    let mut raw = DbServiceClient::new(tls_channel(&addr, &ca).await);
    call_all_23_rpcs(&c, &mut raw, &addr, Some(ALICE)).await;

    // The published Python client over TLS with credentials.
    if crate::support::python::client_installed_or_skip() {
        let args = ["--ca", ca.to_str().expect("utf-8"), "--auth", ALICE];
        crate::support::python::run_checks_with(&addr, &args, "the Python client failed over TLS with auth").await;
    }

    // Wrong, missing and short keys: UNAUTHENTICATED with upstream's words, and nothing done.
    for (auth, says) in [
        (None, "Missing authorization header"),
        (Some("alice:alice-key-0123456788"), "Invalid credentials"),
        (Some("mallory:alice-key-0123456789"), "Invalid credentials"),
        (Some("alice:short"), "API key too short, minimum length: 16"),
    ] {
        assert_eq!(
            ping_refusal(&addr, &ca, auth).await,
            (tonic012::Code::Unauthenticated, says.to_string()),
            "{auth:?}"
        );
        let bad = client(&addr, &ca, auth).await;
        let create = q::CreateStore { store: "evil".into(), dimension: 2, error_if_exists: true, ..Default::default() };
        let refused = bad.create_store(create, None).await.expect_err("refused write");
        assert!(refused.to_string().contains(says), "{auth:?}: {refused}");
    }
    let stores = c.list_stores(None).await.expect("list").stores;
    assert!(stores.iter().all(|s| s.name != "evil"), "a refused write was applied: {stores:?}");

    // A clear-text client is refused at the handshake.
    let plain = DbClient::new(format!("http://{addr}")).await;
    match plain {
        Err(_) => {}
        Ok(plain) => assert!(plain.ping(None).await.is_err(), "a clear-text client was served"),
    }

    // SIGHUP re-reads the users file: bob added and alice removed, without a restart...
    std::fs::write(&users, users_file(&[BOB])).expect("users");
    let reloads = |n: &Proc| n.stdout().matches("SIGHUP: re-read").count();
    follower.signal("HUP");
    eventually(Duration::from_secs(10), "the users file re-read", || async { (reloads(follower) == 1).then_some(()) })
        .await;
    client(&addr, &ca, Some(BOB)).await.ping(None).await.expect("an added user is let in");
    assert_eq!(ping_refusal(&addr, &ca, Some(ALICE)).await.0, tonic012::Code::Unauthenticated, "a removed user");
    // ... and a broken file changes nothing.
    std::fs::write(&users, "[users]\nbob = \"not a hash\"\n").expect("users");
    follower.signal("HUP");
    eventually(Duration::from_secs(10), "the broken file refused", || async {
        follower.stdout().contains("keeping the users as they were").then_some(())
    })
    .await;
    client(&addr, &ca, Some(BOB)).await.ping(None).await.expect("still let in after a broken file");
    assert_eq!(ping_refusal(&addr, &ca, Some(ALICE)).await.0, tonic012::Code::Unauthenticated);

    for n in nodes.iter_mut() {
        assert!(n.terminate().success(), "node {} exits cleanly", n.id);
    }
}

#[test]
fn without_tls_a_node_serves_loopback_only_unless_told_insecure_and_auth_needs_tls() {
    let root = ProcRoot::new();
    let dir = root.path().join("d");
    let dir_s = dir.to_str().expect("utf-8 path");
    let port = free_addr().port();
    let any = format!("0.0.0.0:{port}");
    let (ok, out) = run(&["serve", "--data-dir", dir_s, "--listen", &any]);
    assert!(!ok, "served on {any} without TLS: {out}");
    assert!(out.contains(&format!("refusing to listen on {any} without TLS")) && out.contains("--insecure"), "{out}");
    assert!(!dir.join("log").exists(), "a refused start touched the data directory");

    let users = root.path().join("auth.toml");
    std::fs::write(&users, users_file(&[ALICE])).expect("users");
    let (ok, out) =
        run(&["serve", "--data-dir", dir_s, "--enable-auth", "--auth-config", users.to_str().expect("utf-8")]);
    assert!(!ok && out.contains("--enable-auth needs TLS"), "{out}");

    let mut node = std::process::Command::new(BIN)
        .args(["serve", "--data-dir", dir_s, "--listen", &any, "--insecure"])
        .env("AHNLICH_RAFT_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let served = rt.block_on(async {
        let local = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if let Ok(c) = DbClient::new(local.clone()).await
                && c.ping(None).await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let _ = node.kill();
    let _ = node.wait();
    assert!(served, "with --insecure the node serves on {any}");
}
