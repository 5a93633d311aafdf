//! What an operator sees. Metrics scraped from a running three-node cluster, parsed with the
//! Prometheus project's own parser (Python `prometheus_client`), move with the work done; a
//! clean start logs its election and no warning, as text or as JSON lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::procs::{Proc, ProcRoot, eventually, free_addr, voters};
use crate::support::python::installed_or_skip;
use ahnlich_raft::proto::admin::TriggerSnapshotRequest;
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// `GET /metrics` from `addr`: the body, after checking the status line.
fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// Every sample in `text`, as the Prometheus parser reads it (it raises on a malformed text).
fn parse(text: &str) -> Vec<Sample> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(out.status.success(), "the Prometheus parser refused the text: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Sample>(line).expect("a sample"))
        .collect()
}

/// The value of `name` with (at least) `labels`, if present.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v)))
        .map(|(_, _, v)| *v)
}

fn metric(samples: &[Sample], name: &str) -> f64 {
    value(samples, name, &[]).unwrap_or_else(|| panic!("no {name} in the scrape"))
}

fn entry(x: f32) -> DbStoreEntry {
    DbStoreEntry { key: Some(StoreKey { key: vec![x, 1.0] }), value: Some(StoreValue { value: Default::default() }) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_three_node_cluster_move_with_the_work_done() {
    if !installed_or_skip("prometheus_client.parser", "prometheus-client") {
        return;
    }
    let root = ProcRoot::new();
    let scrapes: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let at: Vec<String> = scrapes.iter().map(SocketAddr::to_string).collect();
    let flags = |i: usize| ["--metrics-listen", at[i].as_str(), "--max-memory", "1073741824"];
    let n1 = Proc::start(root.path(), 1, None, &flags(0));
    let n2 = Proc::start(root.path(), 2, Some(n1.addr), &flags(1));
    let n3 = Proc::start(root.path(), 3, Some(n1.addr), &flags(2));
    voters(&n1, 3).await;
    let before: Vec<Vec<Sample>> = scrapes.iter().map(|&a| parse(&scrape(a))).collect();
    for s in &before {
        assert_eq!(metric(s, "ahnlich_raft_raft_voters"), 3.0);
    }

    // Work through node 2: a store, 40 single-entry writes, one refused duplicate.
    const WRITES: usize = 40;
    let mut c = n2.db().await;
    let create = q::CreateStore {
        store: "m".into(),
        dimension: 2,
        create_predicates: vec![],
        non_linear_indices: vec![],
        error_if_exists: true,
        schema: None,
    };
    c.create_store(create.clone()).await.expect("create");
    for i in 0..WRITES {
        let set = q::Set { store: "m".into(), inputs: vec![entry(i as f32)], schema: None };
        c.set(set).await.expect("set");
    }
    c.create_store(create).await.expect_err("a duplicate store is refused");
    n2.admin().await.trigger_snapshot(TriggerSnapshotRequest {}).await.expect("a snapshot on node 2");

    let after: Vec<Vec<Sample>> = eventually(Duration::from_secs(20), "every node to apply the writes", || async {
        let now: Vec<Vec<Sample>> = scrapes.iter().map(|&a| parse(&scrape(a))).collect();
        let applied = |i: usize, s: &[Sample]| {
            metric(s, "ahnlich_raft_raft_applied_index")
                >= metric(&before[i], "ahnlich_raft_raft_applied_index") + (WRITES + 1) as f64
        };
        now.iter().enumerate().all(|(i, s)| applied(i, s)).then_some(now)
    })
    .await;

    let leaders: f64 = after.iter().map(|s| metric(s, "ahnlich_raft_raft_is_leader")).sum();
    assert_eq!(leaders, 1.0, "exactly one node says it leads");
    let leader = after.iter().find(|s| metric(s, "ahnlich_raft_raft_is_leader") == 1.0).expect("the leader");
    let term = metric(leader, "ahnlich_raft_raft_term");
    for (i, s) in after.iter().enumerate() {
        assert_eq!(metric(s, "ahnlich_raft_raft_term"), term, "node {} agrees on the term", i + 1);
        assert_eq!(metric(s, "ahnlich_raft_raft_leader_id"), metric(leader, "ahnlich_raft_raft_leader_id"));
        let written =
            metric(s, "ahnlich_raft_wal_entries_total") - metric(&before[i], "ahnlich_raft_wal_entries_total");
        assert!(written >= (WRITES + 1) as f64, "node {} logged {written} entries", i + 1);
        assert!(metric(s, "ahnlich_raft_wal_fsyncs_total") > metric(&before[i], "ahnlich_raft_wal_fsyncs_total"));
        assert!(metric(s, "ahnlich_raft_wal_fsync_duration_seconds_count") > 0.0);
        assert!(metric(s, "ahnlich_raft_wal_segments") >= 1.0);
        assert!(metric(s, "ahnlich_raft_wal_spare_segments") >= 0.0);
        assert_eq!(value(s, "ahnlich_raft_engine_store_entries", &[("store", "public.m")]), Some(WRITES as f64));
        assert_eq!(metric(s, "ahnlich_raft_engine_stores"), 1.0);
        assert!(metric(s, "ahnlich_raft_engine_memory_used_bytes") > 0.0);
        let since_snapshot = metric(s, "ahnlich_raft_raft_log_bytes_since_snapshot");
        if i != 1 {
            // No snapshot here: the whole log, at least a record header per write.
            assert!(since_snapshot >= (32 * WRITES) as f64, "node {}: {since_snapshot} bytes of log", i + 1);
        }
    }
    for peer in ["1", "2", "3"] {
        let lag = value(leader, "ahnlich_raft_raft_peer_lag_entries", &[("peer", peer)]);
        assert!(lag.is_some_and(|l| l >= 0.0), "the leader reports node {peer}'s lag: {lag:?}");
    }
    let node2 = &after[1];
    let sets = value(node2, "ahnlich_raft_db_requests_total", &[("rpc", "Set"), ("code", "OK")]);
    assert_eq!(sets, Some(WRITES as f64), "node 2 counted the Sets it served");
    let dup = value(node2, "ahnlich_raft_db_requests_total", &[("rpc", "CreateStore"), ("code", "ALREADY_EXISTS")]);
    assert_eq!(dup, Some(1.0), "and the refusal, by its code");
    let timed = value(node2, "ahnlich_raft_db_request_duration_seconds_count", &[("rpc", "Set")]);
    assert_eq!(timed, Some(WRITES as f64));
    assert!(metric(node2, "ahnlich_raft_db_request_bytes_total") > 0.0);
    assert!(metric(node2, "ahnlich_raft_db_response_bytes_total") > 0.0);
    assert_eq!(metric(node2, "ahnlich_raft_db_requests_in_flight"), 0.0);
    assert_eq!(metric(node2, "ahnlich_raft_snapshots_total"), 1.0, "the snapshot taken on node 2 was counted");
    assert!(metric(node2, "ahnlich_raft_snapshot_age_seconds") >= 0.0);

    // Every series the example Grafana dashboard charts is one the nodes export.
    let exported: BTreeSet<&str> = after.iter().flatten().map(|(name, _, _)| name.as_str()).collect();
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/grafana-dashboard.json"))
        .expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in exprs {
        for name in
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("ahnlich_raft_"))
        {
            assert!(exported.contains(name), "the dashboard charts {name}, which no node exports");
        }
    }
    drop((n1, n2, n3));
}

/// Starts a fresh single node with the default log filter and `extra` flags, waits until it
/// leads, stops it with SIGTERM, and returns what it wrote to stderr.
fn clean_start_log(extra: &[&str]) -> String {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env_remove("AHNLICH_RAFT_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("won the election") {
        assert!(
            Instant::now() < deadline,
            "no election within 20 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(term.success());
    assert!(child.wait().expect("wait").success());
    std::fs::read_to_string(&log).expect("log")
}

#[test]
fn a_clean_start_logs_its_election_and_no_warning() {
    for _ in 0..3 {
        let log = clean_start_log(&[]);
        assert!(!log.contains(" WARN "), "a clean start warns:\n{log}");
        for line in [
            "recovered its Raft log",
            "bootstrapped a new single-node cluster",
            "won the election for term 1",
            "stopping",
        ] {
            assert!(log.contains(line), "no {line:?} in:\n{log}");
        }
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let log = clean_start_log(&["--log-format", "json"]);
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(), "{line}");
        messages.push(v["fields"]["message"].as_str().expect("a message").to_string());
    }
    assert!(messages.iter().any(|m| m.contains("won the election for term 1")), "{messages:?}");
}

#[test]
fn a_config_file_sits_between_the_environment_and_the_defaults() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "data-dir = \"from-file\"\nlisten = \"127.0.0.1:7001\"\nmax_memory = 1000\nsnapshot-every = 7\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["serve", "--print-config", "--max-memory", "5", "--config"])
        .arg(&file)
        .env("AHNLICH_RAFT_LISTEN", "127.0.0.1:7002")
        .env("AHNLICH_RAFT_SNAPSHOT_EVERY", "9")
        .env_remove("AHNLICH_RAFT_DATA_DIR")
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "max-memory = 5  # flag",
        "listen = \"127.0.0.1:7002\"  # env",
        "snapshot-every = 9  # env",
        "data-dir = \"from-file\"  # file",
        "keep-behind-snapshot = 1000  # default",
    ] {
        assert!(printed.contains(line), "no {line:?} in:\n{printed}");
    }
    std::fs::write(&file, "max-memroy = 1\n").expect("write");
    let out =
        Command::new(env!("CARGO_BIN_EXE_ahnlich-raft")).args(["serve", "--config"]).arg(&file).output().expect("run");
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(error.contains("\"max-memroy\"") && error.contains("node.toml"), "{error}");
}

/// What the endpoint at `addr` answers to `request`: its status line.
fn status_line(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = s.write_all(request);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_get_metrics_and_refuses_the_rest() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut config = ahnlich_raft::server::node::NodeConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let node = ahnlich_raft::server::node::Node::start(config).await.expect("start");
    let at = node.metrics_addr().expect("metrics are served");
    let oversized = [b"GET /metrics HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 16 << 10]].concat();
    let answers = tokio::task::spawn_blocking(move || {
        [
            status_line(at, b"GET /metrics HTTP/1.1\r\n\r\n"),
            status_line(at, b"POST /metrics HTTP/1.1\r\n\r\n"),
            status_line(at, b"GET /admin HTTP/1.1\r\n\r\n"),
            status_line(at, &oversized),
        ]
    })
    .await
    .expect("requests");
    assert_eq!(
        answers,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 405 Method Not Allowed",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 431 Request Header Fields Too Large"
        ]
    );
    node.shutdown().await.expect("shutdown");
}
