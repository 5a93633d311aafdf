//! The connections open to a node's port right now, for ListClients: each accepted connection
//! is registered when it is accepted and forgotten when it closes. Only those that have called
//! the DB API are listed as clients, so peers' Raft and admin connections to the same port
//! are not.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// One open connection.
struct Open {
    since: SystemTime,
    called_db_api: bool,
}

/// The open connections of one node's port.
#[derive(Default)]
pub struct Connections {
    open: Mutex<BTreeMap<SocketAddr, Open>>,
}

/// An open DB-API client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address.
    pub addr: SocketAddr,
    /// When its connection was accepted.
    pub since: SystemTime,
}

impl Connections {
    fn open(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `stream`, counted as open until it is dropped.
    pub fn track(self: &Arc<Self>, stream: TcpStream) -> TrackedStream {
        let peer = stream.peer_addr().ok();
        if let Some(addr) = peer {
            self.open().insert(addr, Open { since: SystemTime::now(), called_db_api: false });
        }
        TrackedStream { stream, registry: self.clone(), peer }
    }

    /// Notes that the connection from `addr` called the DB API (a no-op once it has closed).
    pub fn called_db_api(&self, addr: SocketAddr) {
        if let Some(open) = self.open().get_mut(&addr) {
            open.called_db_api = true;
        }
    }

    /// The open connections that have called the DB API, by address.
    pub fn clients(&self) -> Vec<Client> {
        self.open().iter().filter(|(_, o)| o.called_db_api).map(|(&addr, o)| Client { addr, since: o.since }).collect()
    }

    /// How many connections are open, clients or peers.
    pub fn count(&self) -> usize {
        self.open().len()
    }
}

/// An accepted connection that leaves the registry when dropped (when the server is done with
/// it, whichever side closed it).
pub struct TrackedStream {
    stream: TcpStream,
    registry: Arc<Connections>,
    peer: Option<SocketAddr>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if let Some(addr) = self.peer {
            self.registry.open().remove(&addr);
        }
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_listed_while_open_and_once_it_called_the_db_api() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let registry = Arc::new(Connections::default());
        let dial = tokio::spawn(async move { TcpStream::connect(addr).await.expect("connect") });
        let (accepted, from) = listener.accept().await.expect("accept");
        let _client_side = dial.await.expect("dial");
        let tracked = registry.track(accepted);
        assert_eq!(registry.count(), 1);
        assert!(registry.clients().is_empty(), "a peer that never called the DB API is no client");
        registry.called_db_api(from);
        assert_eq!(registry.clients().iter().map(|c| c.addr).collect::<Vec<_>>(), vec![from]);
        drop(tracked);
        assert_eq!(registry.count(), 0);
        assert!(registry.clients().is_empty());
    }
}
