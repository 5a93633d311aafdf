//! What a node does with snapshot offers it should not take: one over its cap or over the free
//! space of its volume is refused before a byte is written; while one snapshot is being
//! received a second is refused; a stream abandoned part-way leaves no file behind; and the
//! node still takes writes afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::proto::log as lg;
use ahnlich_raft::proto::raft as pb;
use ahnlich_raft::proto::raft::raft_service_client::RaftServiceClient;
use ahnlich_raft::server::gate::CLUSTER_ID;
use ahnlich_raft::server::node::{Node, NodeConfig};
use tokio_stream_shim::ReceiverStream;
use tonic::Code;
use tonic::metadata::MetadataValue;

const CAP: u64 = 1 << 20;

/// A stream of the messages sent on a channel, ending when its sender is dropped.
mod tokio_stream_shim {
    pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_util::Stream for ReceiverStream<T> {
        type Item = T;

        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

fn offer(length: u64) -> pb::SnapshotChunk {
    pb::SnapshotChunk {
        kind: Some(pb::snapshot_chunk::Kind::Offer(pb::SnapshotOffer {
            vote: Some(lg::Vote { term: 1, voted_for: 1, committed: true }),
            last_log_id: Some(lg::LogId { term: 1, index: 1_000 }),
            length,
        })),
    }
}

fn data(n: usize) -> pb::SnapshotChunk {
    pb::SnapshotChunk { kind: Some(pb::snapshot_chunk::Kind::Data(vec![7; n].into())) }
}

fn received_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("snapshots")) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("received"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_concurrent_and_abandoned_snapshot_streams_leave_nothing_behind() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut config = NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.max_snapshot_bytes = CAP;
    let node = Node::start(config).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let cluster = MetadataValue::try_from(node.cluster_id().expect("id").to_string()).expect("ascii");
    let mut raft = RaftServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    let send = |chunks: Vec<pb::SnapshotChunk>| {
        let mut r = tonic::Request::new(futures_util::stream::iter(chunks));
        r.metadata_mut().insert(CLUSTER_ID, cluster.clone());
        r
    };

    let over = raft.install_snapshot(send(vec![offer(CAP + 1), data(16)])).await.expect_err("over the cap");
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert!(over.message().contains("--max-snapshot-bytes"), "{over:?}");
    let huge = u64::MAX / 2;
    let other_dir = tempfile::TempDir::new().expect("tempdir");
    let mut uncapped = NodeConfig::new(other_dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    uncapped.max_snapshot_bytes = u64::MAX;
    let other = Node::start(uncapped).await.expect("start");
    other.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let mut to_other = RaftServiceClient::connect(format!("http://{}", other.addr())).await.expect("connect");
    let mut r = tonic::Request::new(futures_util::stream::iter(vec![offer(huge)]));
    r.metadata_mut()
        .insert(CLUSTER_ID, MetadataValue::try_from(other.cluster_id().expect("id").to_string()).expect("ascii"));
    let full = to_other.install_snapshot(r).await.expect_err("larger than the disk");
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    assert!(full.message().contains("does not fit"), "{full:?}");
    other.shutdown().await.expect("shutdown");

    // A stream held open part-way, and a second offer meanwhile.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(offer(4096)).await.expect("send");
    tx.send(data(100)).await.expect("send");
    let mut held = tonic::Request::new(ReceiverStream(rx));
    held.metadata_mut().insert(CLUSTER_ID, cluster.clone());
    let mut first = raft.clone();
    let first = tokio::spawn(async move { first.install_snapshot(held).await });
    let dir_path = dir.path().to_path_buf();
    for _ in 0..200 {
        if !received_files(&dir_path).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(received_files(dir.path()).len(), 1, "the first stream is being written");
    let second = raft.install_snapshot(send(vec![offer(4096), data(4096)])).await.expect_err("one at a time");
    assert_eq!(second.code(), Code::Unavailable, "{second:?}");
    drop(tx);
    let abandoned = first.await.expect("task").expect_err("ended part-way");
    assert_eq!(abandoned.code(), Code::InvalidArgument, "{abandoned:?}");
    assert!(abandoned.message().contains("ended after 100 of 4096 bytes"), "{abandoned:?}");
    assert!(received_files(dir.path()).is_empty(), "left behind: {:?}", received_files(dir.path()));

    let mut db = DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    db.create_store(q::CreateStore { store: "after".into(), dimension: 2, ..Default::default() })
        .await
        .expect("the node still takes writes");
    drop((raft, db));
    node.shutdown().await.expect("shutdown");
}
