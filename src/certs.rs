//! `ahnlich-raft cert …`: a cluster CA, node certificates and operator certificates, written
//! as PEM files into one directory under the names `serve --certs-dir` and
//! `cluster --certs-dir` read ([`crate::server::security::files`]).
//!
//! Keys are ECDSA P-256. The CA is valid for 10 years, the certificates it issues for 5. Node
//! certificates serve both ends of a connection (server and client use), since every node
//! dials its peers; they name the hosts (DNS names or IP addresses) peers and clients dial.
//! Operator certificates are for client use only. Private keys are written readable by their
//! owner alone, and no existing file is overwritten.
//!
//! Certificates are issued with the key in `ca.key` under the CA's fixed name, so `create-node`
//! and `create-client` work with a CA made by `create-ca`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::server::security::files;

const DAY: u64 = 24 * 60 * 60;
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * DAY);
const CERT_VALIDITY: Duration = Duration::from_secs(5 * 365 * DAY);

/// The CA's subject; certificates name it as their issuer.
const CA_NAME: &str = "ahnlich-raft cluster CA";

/// What a `cert` subcommand makes.
#[derive(Clone, Debug)]
pub enum CertCommand {
    /// A new cluster CA: `ca.crt` and `ca.key`.
    Ca,
    /// A node certificate for these hosts: `node.crt` and `node.key`.
    Node {
        /// DNS names and IP addresses the node is reached at.
        hosts: Vec<String>,
    },
    /// An operator's client certificate: `client.crt` and `client.key`.
    Client {
        /// The name in the certificate's subject.
        name: String,
    },
}

/// Runs `command` in `dir` (created if missing) and returns what to print: the files written.
pub fn run(dir: &Path, command: &CertCommand) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let written = match command {
        CertCommand::Ca => create_ca(dir)?,
        CertCommand::Node { hosts } => {
            if hosts.is_empty() {
                return Err("a node certificate needs at least one host (name or IP address) peers dial".into());
            }
            let mut params = CertificateParams::new(hosts.clone())
                .map_err(|e| format!("the hosts {hosts:?} cannot be put in a certificate: {e}"))?;
            params.distinguished_name = name(&format!("ahnlich-raft node {}", hosts[0]));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            issue(dir, params, files::NODE_CERT, files::NODE_KEY)?
        }
        CertCommand::Client { name: who } => {
            let mut params = CertificateParams::default();
            params.distinguished_name = name(who);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            issue(dir, params, files::CLIENT_CERT, files::CLIENT_KEY)?
        }
    };
    Ok(written.iter().map(|p| format!("wrote {}\n", p.display())).collect())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The CA's parameters; the same on every call, so an issuer can be rebuilt from its key.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Sets a validity of `length` starting an hour ago (clocks of a cluster differ a little).
fn valid_for(params: &mut CertificateParams, length: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let start = rcgen::date_time_ymd(1970, 1, 1) + now.saturating_sub(Duration::from_secs(3600));
    params.not_before = start;
    params.not_after = start + length;
}

fn create_ca(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let mut params = ca_params();
    valid_for(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key).map_err(|e| format!("signing the CA certificate: {e}"))?;
    write_pair(dir, files::CA_CERT, &cert.pem(), files::CA_KEY, &key.serialize_pem())
}

fn issue(dir: &Path, mut params: CertificateParams, cert_name: &str, key_name: &str) -> Result<Vec<PathBuf>, String> {
    let ca_key_path = dir.join(files::CA_KEY);
    let ca_key_pem = std::fs::read_to_string(&ca_key_path)
        .map_err(|e| format!("reading the CA key {}: {e} (make one with `cert create-ca`)", ca_key_path.display()))?;
    let ca_key =
        KeyPair::from_pem(&ca_key_pem).map_err(|e| format!("{} is not a private key: {e}", ca_key_path.display()))?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
    valid_for(&mut params, CERT_VALIDITY);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(|e| format!("signing {cert_name}: {e}"))?;
    write_pair(dir, cert_name, &cert.pem(), key_name, &key.serialize_pem())
}

fn write_pair(dir: &Path, cert_name: &str, cert: &str, key_name: &str, key: &str) -> Result<Vec<PathBuf>, String> {
    let (cert_path, key_path) = (dir.join(cert_name), dir.join(key_name));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(format!("{} exists already; move it away to make a new one", path.display()));
        }
    }
    write_new(&key_path, key, 0o600)?;
    write_new(&cert_path, cert, 0o644)?;
    Ok(vec![cert_path, key_path])
}

fn write_new(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_node_and_client_certificates_and_nothing_is_overwritten() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let refused = run(dir.path(), &CertCommand::Node { hosts: vec!["127.0.0.1".into()] });
        assert!(refused.expect_err("no CA yet").contains("cert create-ca"));
        run(dir.path(), &CertCommand::Ca).expect("ca");
        run(dir.path(), &CertCommand::Node { hosts: vec!["127.0.0.1".into(), "localhost".into()] }).expect("node");
        run(dir.path(), &CertCommand::Client { name: "root".into() }).expect("client");
        for f in
            [files::CA_CERT, files::CA_KEY, files::NODE_CERT, files::NODE_KEY, files::CLIENT_CERT, files::CLIENT_KEY]
        {
            let text = std::fs::read_to_string(dir.path().join(f)).expect(f);
            assert!(text.starts_with("-----BEGIN "), "{f} is PEM");
        }
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(files::NODE_KEY)).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "a private key is readable by its owner only");
        let again = run(dir.path(), &CertCommand::Ca).expect_err("ca exists");
        assert!(again.contains("exists already"), "{again}");
    }
}
