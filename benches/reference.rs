//! The in-memory reference for the cluster bench: this project's engine behind the same gRPC
//! DB service and the same request conversions, with no Raft, no log and no fsync, as
//! upstream Ahnlich serves (each write applied in its request handler). What a durable node
//! costs is its throughput against this one's, measured in the same run.
//!
//! It answers the calls the load profile makes (CreateStore and Set); every other call is
//! UNIMPLEMENTED.

use std::net::SocketAddr;
use std::sync::Arc;

use ahnlich_raft::engine::{Engine, Response};
use ahnlich_raft::proto::ahnlich::db::{pipeline as pl, query as q, server as s};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_server::{DbService, DbServiceServer};
use ahnlich_raft::proto::ahnlich::shared::{cluster, info};
use ahnlich_raft::server::convert;
use tonic::{Request, Response as Reply, Status};

/// The engine, served.
struct Reference {
    engine: Arc<Engine>,
}

/// Starts the reference on `addr` on a runtime of its own (two workers, as a node has on this
/// machine); it serves until the process ends.
pub fn start(addr: SocketAddr) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("reference runtime");
        runtime.block_on(async move {
            let service = DbServiceServer::new(Reference { engine: Arc::new(Engine::default()) })
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            tonic::transport::Server::builder().add_service(service).serve(addr).await.expect("reference serves");
        });
    });
}

fn unimplemented() -> Status {
    Status::unimplemented("the bench's in-memory reference answers CreateStore and Set only")
}

#[tonic::async_trait]
impl DbService for Reference {
    async fn create_store(&self, request: Request<q::CreateStore>) -> Result<Reply<s::Unit>, Status> {
        let cmd = convert::create_store(request.into_inner())?;
        self.engine.apply(&cmd).map_err(convert::status)?;
        Ok(Reply::new(s::Unit {}))
    }

    async fn set(&self, request: Request<q::Set>) -> Result<Reply<s::Set>, Status> {
        let cmd = convert::set(request.into_inner())?;
        match self.engine.apply(&cmd).map_err(convert::status)? {
            Response::Set { inserted, updated } => Ok(Reply::new(s::Set {
                upsert: Some(info::StoreUpsert { inserted: inserted as u64, updated: updated as u64 }),
            })),
            _ => Err(Status::internal("Set answered something else")),
        }
    }

    async fn create_pred_index(&self, _: Request<q::CreatePredIndex>) -> Result<Reply<s::CreateIndex>, Status> {
        Err(unimplemented())
    }

    async fn get_sim_n(&self, _: Request<q::GetSimN>) -> Result<Reply<s::GetSimN>, Status> {
        Err(unimplemented())
    }

    async fn create_non_linear_algorithm_index(
        &self,
        _: Request<q::CreateNonLinearAlgorithmIndex>,
    ) -> Result<Reply<s::CreateIndex>, Status> {
        Err(unimplemented())
    }

    async fn get_key(&self, _: Request<q::GetKey>) -> Result<Reply<s::Get>, Status> {
        Err(unimplemented())
    }

    async fn get_pred(&self, _: Request<q::GetPred>) -> Result<Reply<s::Get>, Status> {
        Err(unimplemented())
    }

    async fn get_store(&self, _: Request<q::GetStore>) -> Result<Reply<s::StoreInfo>, Status> {
        Err(unimplemented())
    }

    async fn list_store_entries(&self, _: Request<q::ListStoreEntries>) -> Result<Reply<s::ListStoreEntries>, Status> {
        Err(unimplemented())
    }

    async fn upsert(&self, _: Request<q::Upsert>) -> Result<Reply<s::Set>, Status> {
        Err(unimplemented())
    }

    async fn drop_pred_index(&self, _: Request<q::DropPredIndex>) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn drop_non_linear_algorithm_index(
        &self,
        _: Request<q::DropNonLinearAlgorithmIndex>,
    ) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn del_key(&self, _: Request<q::DelKey>) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn del_pred(&self, _: Request<q::DelPred>) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn drop_store(&self, _: Request<q::DropStore>) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn drop_schema(&self, _: Request<q::DropSchema>) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn clear_store(&self, _: Request<q::ClearStore>) -> Result<Reply<s::Del>, Status> {
        Err(unimplemented())
    }

    async fn list_clients(&self, _: Request<q::ListClients>) -> Result<Reply<s::ClientList>, Status> {
        Err(unimplemented())
    }

    async fn list_stores(&self, _: Request<q::ListStores>) -> Result<Reply<s::StoreList>, Status> {
        Err(unimplemented())
    }

    async fn info_server(&self, _: Request<q::InfoServer>) -> Result<Reply<s::InfoServer>, Status> {
        Err(unimplemented())
    }

    async fn cluster_info(
        &self,
        _: Request<cluster::ClusterInfoQuery>,
    ) -> Result<Reply<cluster::ClusterInfoResponse>, Status> {
        Err(unimplemented())
    }

    async fn ping(&self, _: Request<q::Ping>) -> Result<Reply<s::Pong>, Status> {
        Err(unimplemented())
    }

    async fn pipeline(&self, _: Request<pl::DbRequestPipeline>) -> Result<Reply<pl::DbResponsePipeline>, Status> {
        Err(unimplemented())
    }
}
