//! A node's security settings as given (certificate files, the users file, `--insecure`) and
//! what they become once read and checked: the TLS configuration of its port, of its channels
//! to peers, and who may call which service.
//!
//! One port serves clients, peers and operators. Its TLS layer asks every caller for a
//! certificate but requires none (clients have none); a certificate offered must chain to the
//! cluster CA or the handshake fails. Then, before any message is decoded ([`super::gate`]):
//! - the Raft transport and cluster admin take only callers with such a certificate, and the
//!   right cluster id;
//! - the DB API takes a user's bearer credentials when auth is on (or a member's certificate,
//!   for a request a follower forwards to the leader).
//!
//! A node with no TLS at all serves only loopback unless told `--insecure`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::auth::Users;

/// File names in a certificates directory (`--certs-dir`), as `ahnlich-raft cert` writes them.
pub mod files {
    /// The cluster CA's certificate.
    pub const CA_CERT: &str = "ca.crt";
    /// The CA's private key (needed only to make certificates; keep it off the nodes).
    pub const CA_KEY: &str = "ca.key";
    /// A node's certificate (server and client use).
    pub const NODE_CERT: &str = "node.crt";
    /// A node's private key.
    pub const NODE_KEY: &str = "node.key";
    /// An operator's client certificate (for `ahnlich-raft cluster …`).
    pub const CLIENT_CERT: &str = "client.crt";
    /// An operator's private key.
    pub const CLIENT_KEY: &str = "client.key";
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate (chain).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The cluster's mutual TLS: its CA and this node's certificate from it.
#[derive(Clone, Debug)]
pub struct PeerFiles {
    /// The cluster CA's certificate: the root of trust for peers and operators.
    pub ca: PathBuf,
    /// This node's certificate and key, issued by the CA for server and client use.
    pub node: CertFiles,
}

impl PeerFiles {
    /// The conventional files of a certificates directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join(files::CA_CERT),
            node: CertFiles { cert: dir.join(files::NODE_CERT), key: dir.join(files::NODE_KEY) },
        }
    }
}

/// What the operator asked for.
#[derive(Clone, Debug, Default)]
pub struct SecurityConfig {
    /// The certificate the port presents to clients (`--tls-cert`, `--tls-key`); default:
    /// the node certificate of `peer`.
    pub tls: Option<CertFiles>,
    /// The cluster's mutual TLS (`--peer-ca`, `--peer-cert`, `--peer-key` or `--certs-dir`).
    pub peer: Option<PeerFiles>,
    /// Upstream Ahnlich's users file (`--enable-auth --auth-config FILE`).
    pub auth: Option<PathBuf>,
    /// Serve in clear text on a non-loopback address.
    pub insecure: bool,
}

/// Who may call the Raft transport and cluster admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAuth {
    /// Anyone who reaches the port (no TLS: loopback, or `--insecure`).
    Open,
    /// Callers with a certificate from the cluster CA.
    Certificate,
    /// Nobody: the port has TLS for clients but no cluster CA to tell peers by.
    Closed,
}

/// The security settings, read and checked.
#[derive(Clone)]
pub struct Security {
    /// TLS of the port, if any.
    pub server_tls: Option<ServerTlsConfig>,
    /// TLS of the channels to peers, if any.
    pub peer_tls: Option<ClientTlsConfig>,
    /// Who may call the Raft transport and admin.
    pub peers: PeerAuth,
    /// The DB API's users, when auth is on.
    pub users: Option<Arc<Users>>,
}

impl Security {
    /// No TLS, no auth: what a loopback node or a test runs with.
    pub fn open() -> Self {
        Self { server_tls: None, peer_tls: None, peers: PeerAuth::Open, users: None }
    }

    /// Reads and checks the files of `config` for a node listening on `listen`.
    pub fn load(config: &SecurityConfig, listen: std::net::SocketAddr) -> Result<Self, String> {
        let peer = config.peer.as_ref().map(read_peer).transpose()?;
        let served = match (&config.tls, &peer) {
            (Some(files), _) => Some(read_identity(files)?),
            (None, Some((_, identity))) => Some(identity.clone()),
            (None, None) => None,
        };
        let users = match &config.auth {
            Some(_) if served.is_none() => {
                return Err("--enable-auth needs TLS (--tls-cert and --tls-key, or --certs-dir): API keys must not \
                            cross the network in clear text"
                    .into());
            }
            Some(path) => Some(Arc::new(Users::load(path)?)),
            None => None,
        };
        let Some(identity) = served else {
            if !listen.ip().is_loopback() && !config.insecure {
                return Err(format!(
                    "refusing to listen on {listen} without TLS: anyone who reaches it could read and change every \
                     store and take over the cluster. Give --certs-dir (see `ahnlich-raft cert --help`), or \
                     --insecure to serve in clear text anyway"
                ));
            }
            return Ok(Self::open());
        };
        let mut server = ServerTlsConfig::new().identity(identity).timeout(HANDSHAKE_TIMEOUT);
        let (peers, peer_tls) = match peer {
            Some((ca, node)) => {
                server = server.client_ca_root(ca.clone()).client_auth_optional(true);
                (PeerAuth::Certificate, Some(ClientTlsConfig::new().ca_certificate(ca).identity(node)))
            }
            None => (PeerAuth::Closed, None),
        };
        Ok(Self { server_tls: Some(server), peer_tls, peers, users })
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading the {what} {}: {e}", path.display()))
}

fn read_identity(files: &CertFiles) -> Result<Identity, String> {
    Ok(Identity::from_pem(read(&files.cert, "certificate")?, read(&files.key, "private key")?))
}

fn read_peer(files: &PeerFiles) -> Result<(Certificate, Identity), String> {
    Ok((Certificate::from_pem(read(&files.ca, "cluster CA certificate")?), read_identity(&files.node)?))
}

/// The TLS configuration of an operator's channel to a node: the cluster CA and the
/// operator's certificate.
pub fn operator_tls(ca: &Path, client: &CertFiles) -> Result<ClientTlsConfig, String> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca, "cluster CA certificate")?))
        .identity(read_identity(client)?))
}
