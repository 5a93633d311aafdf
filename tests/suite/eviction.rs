//! Which vote requests a node refuses as coming from outside the cluster
//! (`src/raft/eviction.rs`): only a candidate missing from the committed configuration whose
//! log ends before it. A candidate further ahead may belong to a newer configuration this node
//! has not seen, and is always heard.

use std::collections::BTreeMap;
use std::time::Duration;

use ahnlich_raft::raft::eviction::{Eviction, outsider};
use ahnlich_raft::raft::network::is_not_member;
use ahnlich_raft::server::raft_service::not_member;
use openraft::{BasicNode, ServerState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_candidate_behind_the_committed_configuration_that_excludes_it_is_refused() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let (raft, _sm, _) = crate::support::node::start(dir.path()).await;
    assert_eq!(outsider(&raft, 1, 9, None), None, "a node with no configuration refuses nobody");

    raft.initialize(BTreeMap::from([(1u64, BasicNode::default())])).await.expect("initialize");
    raft.wait(Some(Duration::from_secs(10))).state(ServerState::Leader, "leader").await.expect("leader");
    raft.wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(1), "the first term").await.expect("apply");
    // A learner (never reached) makes a second configuration, later in the log. Its index comes
    // from the answer: the metrics may not show the new configuration yet when it arrives.
    let added = raft.add_learner(7, BasicNode { addr: "127.0.0.1:1".into() }, false).await.expect("add learner");
    let config_at = added.log_id.index;
    assert!(config_at > 0);
    // Once the metrics show it applied, they show it as the committed configuration too.
    raft.wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(config_at), "the configuration is committed")
        .await
        .expect("commit");

    for member in [1, 7] {
        assert_eq!(outsider(&raft, 1, member, None), None, "member {member} is heard");
    }
    for behind in [None, Some(0), Some(config_at - 1)] {
        let refusal = outsider(&raft, 1, 9, behind).expect("an outsider behind the configuration is refused");
        assert_eq!((refusal.candidate, refusal.members.clone(), refusal.config_index), (9, vec![1, 7], config_at));
        let refused = not_member(&refusal);
        assert!(is_not_member(&refused), "{refused:?}");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("node 9"), "{refused:?}");
    }
    for ahead in [config_at, config_at + 100] {
        assert_eq!(outsider(&raft, 1, 9, Some(ahead)), None, "a candidate whose log ends at {ahead} is heard");
    }
    assert!(!is_not_member(&tonic::Status::failed_precondition("something else")));
    raft.shutdown().await.expect("shutdown");
}

#[test]
fn an_append_from_a_leader_clears_a_recorded_eviction() {
    let eviction = Eviction::default();
    assert_eq!(eviction.reason(), None);
    eviction.record("node 2 answered: not a member".into());
    assert_eq!(eviction.reason().as_deref(), Some("node 2 answered: not a member"));
    eviction.clear();
    assert_eq!(eviction.reason(), None);
}
