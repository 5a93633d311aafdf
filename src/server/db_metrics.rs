//! Measures every DB-API call where it enters and leaves the node: requests by RPC and gRPC
//! status, latency until the answer is complete, requests in flight, and message bytes each
//! way. The RPC label comes from a fixed list, so a caller cannot mint label values.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::metrics::{Metrics, Rpc, RpcOutcome};

/// The DB-API RPCs, as named in the service definition.
const RPCS: [&str; 23] = [
    "CreateStore",
    "CreatePredIndex",
    "CreateNonLinearAlgorithmIndex",
    "GetKey",
    "GetPred",
    "GetSimN",
    "GetStore",
    "ListStoreEntries",
    "Set",
    "Upsert",
    "DropPredIndex",
    "DropNonLinearAlgorithmIndex",
    "DelKey",
    "DelPred",
    "DropStore",
    "DropSchema",
    "ClearStore",
    "ListClients",
    "ListStores",
    "InfoServer",
    "ClusterInfo",
    "Ping",
    "Pipeline",
];

/// The RPC a request path names, or `unknown`.
fn rpc_of(path: &str) -> &'static str {
    let method = path.rsplit('/').next().unwrap_or_default();
    RPCS.iter().find(|r| **r == method).copied().unwrap_or("unknown")
}

/// The name of a gRPC status code, as Prometheus labels usually spell it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(value))
}

/// A DB-API service, measured.
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Measured<S> {
    /// `inner`, counted in `metrics`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<S: NamedService> NamedService for Measured<S> {
    const NAME: &'static str = S::NAME;
}

/// One call being served: recorded when its answer ends or is dropped.
struct Call {
    metrics: Arc<Metrics>,
    rpc: &'static str,
    started: Instant,
    code: Option<tonic::Code>,
}

impl Drop for Call {
    fn drop(&mut self) {
        // A stream that ended without a status was cut off: the caller sees CANCELLED.
        let code = code_name(self.code.unwrap_or(tonic::Code::Cancelled));
        self.metrics.requests.get_or_create(&RpcOutcome { rpc: self.rpc, code }).inc();
        let rpc = Rpc { rpc: self.rpc };
        self.metrics.request_seconds.get_or_create(&rpc).observe(self.started.elapsed().as_secs_f64());
        self.metrics.requests_in_flight.dec();
    }
}

impl<S, B> tower_service::Service<http::Request<Body>> for Measured<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let metrics = self.metrics.clone();
        metrics.requests_in_flight.inc();
        let mut call =
            Call { metrics: metrics.clone(), rpc: rpc_of(request.uri().path()), started: Instant::now(), code: None };
        let request =
            request.map(|b| Body::new(Counted { inner: b, bytes: metrics.request_bytes.clone(), call: None }));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // An error is answered in the headers alone; a success's status comes in trailers.
            call.code = status_in(response.headers());
            let bytes = metrics.response_bytes.clone();
            Ok(response.map(|b| Body::new(Counted { inner: b, bytes, call: Some(call) })))
        })
    }
}

/// A message body whose data bytes are counted; on the response side it also carries the
/// call, which takes its status from the trailers and is recorded when the body is dropped.
struct Counted<B> {
    inner: B,
    bytes: Counter,
    call: Option<Call>,
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.inc_by(data.len() as u64);
            }
            if let Some(trailers) = frame.trailers_ref()
                && let Some(call) = &mut self.call
            {
                call.code = status_in(trailers).or(call.code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_rpcs_become_labels() {
        assert_eq!(rpc_of("/services.db_service.DBService/GetSimN"), "GetSimN");
        assert_eq!(rpc_of("/services.db_service.DBService/Anything-else"), "unknown");
        assert_eq!(rpc_of(""), "unknown");
    }
}
