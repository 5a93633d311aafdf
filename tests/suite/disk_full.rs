//! A real disk filling up: node 3 of three `serve` processes keeps its data directory on a
//! small tmpfs. Writes go on until its log cannot grow (ENOSPC); it stops and says so, the
//! other two keep taking writes, and once the file system is given room and the node restarted
//! it catches up with every write.
//!
//! Mounting needs privileges (root in the sandbox CI and these machines run in); without them
//! the test says so and checks nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::procs::{Proc, ProcRoot, eventually, voters};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};

const DIM: usize = 128;
const BATCH: u64 = 1_000;

/// A tmpfs mounted at a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remounting {} with size {size}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn batch(b: u64) -> q::Set {
    let inputs = (b * BATCH..(b + 1) * BATCH)
        .map(|i| DbStoreEntry {
            key: Some(StoreKey { key: (0..DIM).map(|d| (i * 7 + d as u64) as f32).collect() }),
            value: Some(StoreValue { value: Default::default() }),
        })
        .collect();
    q::Set { store: "s".into(), inputs, ..Default::default() }
}

async fn store_len(p: &Proc) -> Option<u64> {
    let mut r = tonic::Request::new(q::GetStore { store: "s".into(), ..Default::default() });
    r.metadata_mut().insert("x-ahnlich-read-consistency", "local".parse().expect("ascii"));
    Some(p.db().await.get_store(r).await.ok()?.into_inner().len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_fills_stops_and_catches_up_once_given_room() {
    let root = ProcRoot::new();
    // Room for the first log segment and its spare (32 MiB each) and a little more: the log
    // fills it once it needs a third segment.
    let Some(tmpfs) = Tmpfs::mount(&root.path().join("n3"), "72m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the in-process disk-failure tests still ran");
        return;
    };
    let n1 = Proc::start(root.path(), 1, None, &[]);
    let n2 = Proc::start(root.path(), 2, Some(n1.addr), &[]);
    let mut n3 = Proc::start(root.path(), 3, Some(n1.addr), &[]);
    voters(&n1, 3).await;
    let mut db = n1.db().await;
    db.create_store(q::CreateStore { store: "s".into(), dimension: DIM as u32, ..Default::default() })
        .await
        .expect("create store");

    // Each batch is ~0.6 MB of log: about 110 fill node 3's disk.
    let mut written = 0;
    let stopped = loop {
        assert!(written < 400, "node 3's disk never filled");
        db.set(batch(written)).await.unwrap_or_else(|e| panic!("batch {written}: the majority must take it: {e}"));
        written += 1;
        let status = n3.status().await.expect("a stopped node still answers status");
        if status.role == "stopped" {
            break status;
        }
    };
    assert!(stopped.stopped.contains("os error 28"), "the status names the full disk: {stopped:?}");
    let refused = n3.db().await.set(batch(written)).await.expect_err("a write to the stopped node");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("os error 28"), "{refused:?}");
    for b in written..written + 5 {
        db.set(batch(b)).await.expect("the other two go on");
    }
    written += 5;
    assert!(n3.stdout().contains("No space left on device"), "node 3's log says why");

    // Room again, and a restart: node 3 recovers its log and catches up.
    tmpfs.resize("1g");
    n3.kill();
    n3.restart();
    let expected = written * BATCH;
    eventually(Duration::from_secs(60), "node 3 to catch up after the restart", || async {
        (store_len(&n3).await == Some(expected)).then_some(())
    })
    .await;
    assert_eq!(store_len(&n2).await, Some(expected));
    drop((n1, n2, n3));
    drop(tmpfs);
}
