//! The Prometheus scrape endpoint: plain HTTP/1.1 on its own address, `GET /metrics` and
//! nothing else. It reads at most a small request head, within a few seconds, serves a few
//! scrapes at a time and encodes on the blocking pool, so a hostile or stuck caller costs a
//! socket and nothing more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// The largest request head read.
const MAX_HEAD_BYTES: usize = 8 << 10;

/// How long a caller has to send its request head and take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Scrapes served at once; more connections wait to be accepted.
const AT_ONCE: usize = 4;

/// Binds `addr` for scrapes of `metrics`; returns the bound address and the task serving it
/// (which runs until aborted).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let turns = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let task = tokio::spawn(async move {
        loop {
            let Ok(turn) = turns.clone().acquire_owned().await else { return };
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: try again shortly rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(IO_TIMEOUT, answer(stream, metrics)).await;
                drop(turn);
            });
        }
    });
    Ok((bound, task))
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD_BYTES {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
            )
            .await;
        }
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method != b"GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET /metrics is served\n").await;
    }
    if path != b"/metrics" && !path.starts_with(b"/metrics?") {
        return respond(&mut stream, "404 Not Found", "text/plain", b"only GET /metrics is served\n").await;
    }
    let body = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .map_err(|e| std::io::Error::other(format!("encoding metrics: {e}")))?;
    respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body.as_bytes()).await
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
