//! DB-API users, in upstream Ahnlich's file format and header, so a user of upstream's
//! `--enable-auth --auth-config FILE` keeps both.
//!
//! The file is TOML:
//!
//! ```toml
//! [users]
//! alice = "<SHA-256 of alice's API key, lowercase hex>"
//!
//! [security]
//! min_key_length = 16   # optional; 16 when absent
//! ```
//!
//! A client sends `authorization: Bearer <user>:<api_key>` with every call. The key is hashed
//! and compared with the stored hash in constant time; the answer to any failure is
//! UNAUTHENTICATED with upstream's text for the case. The file can be re-read while serving
//! ([`Users::reload`]); a file that does not parse leaves the users as they were.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The metadata key carrying a client's credentials.
pub const AUTHORIZATION: &str = "authorization";

/// Upstream's default shortest API key.
const DEFAULT_MIN_KEY_LENGTH: usize = 16;

/// Largest users file read, so a mistaken path cannot fill memory.
const MAX_USERS_FILE_BYTES: u64 = 16 << 20;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: HashMap<String, String>,
    #[serde(default)]
    security: Security,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Security {
    #[serde(default = "default_min_key_length")]
    min_key_length: usize,
}

impl Default for Security {
    fn default() -> Self {
        Self { min_key_length: DEFAULT_MIN_KEY_LENGTH }
    }
}

fn default_min_key_length() -> usize {
    DEFAULT_MIN_KEY_LENGTH
}

/// One parsed users file.
#[derive(Debug)]
struct UserTable {
    /// User name → SHA-256 of the API key.
    keys: HashMap<String, [u8; 32]>,
    min_key_length: usize,
}

impl UserTable {
    fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut keys = HashMap::with_capacity(file.users.len());
        for (user, hex) in file.users {
            let hash = parse_sha256_hex(&hex).ok_or_else(|| {
                format!("{}: users.{user} must be the SHA-256 of the API key as 64 hex digits", path.display())
            })?;
            keys.insert(user, hash);
        }
        Ok(Self { keys, min_key_length: file.security.min_key_length })
    }

    fn check(&self, user: &str, key: &str) -> Result<(), Status> {
        if key.len() < self.min_key_length {
            return Err(Status::unauthenticated(format!("API key too short, minimum length: {}", self.min_key_length)));
        }
        let offered: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Hash even for an unknown user, so its answer takes as long as a wrong key's.
        let stored = self.keys.get(user).copied();
        let same = constant_time_eq(&offered, &stored.unwrap_or([0; 32]));
        if stored.is_some() && same { Ok(()) } else { Err(Status::unauthenticated("Invalid credentials")) }
    }
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Equal in time that depends only on the length.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-256 of `api_key` as the users file stores it (64 lowercase hex digits).
pub fn hash_api_key(api_key: &str) -> String {
    Sha256::digest(api_key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The DB-API users of a node, re-readable from their file.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    table: RwLock<Arc<UserTable>>,
}

impl Users {
    /// Reads the users file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let table = read_table(path)?;
        Ok(Self { path: path.to_path_buf(), table: RwLock::new(Arc::new(table)) })
    }

    /// Re-reads the file; on any error the users stay as they were and the error is returned.
    /// Returns how many users the file holds now.
    pub fn reload(&self) -> Result<usize, String> {
        let table = read_table(&self.path)?;
        let n = table.keys.len();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(n)
    }

    /// The file the users come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `metadata` carries the credentials of a user: UNAUTHENTICATED with upstream's
    /// text when it does not.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let header =
            metadata.get(AUTHORIZATION).ok_or_else(|| Status::unauthenticated("Missing authorization header"))?;
        let malformed = || Status::unauthenticated("Invalid authorization format, expected 'Bearer username:api_key'");
        let text = header.to_str().map_err(|_| malformed())?;
        let (user, key) =
            text.strip_prefix("Bearer ").and_then(|creds| creds.trim().split_once(':')).ok_or_else(malformed)?;
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        table.check(user, key)
    }
}

fn read_table(path: &Path) -> Result<UserTable, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("reading {}: {e}", path.display()))?.len();
    if len > MAX_USERS_FILE_BYTES {
        return Err(format!("{} is {len} bytes; a users file may hold at most {MAX_USERS_FILE_BYTES}", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    UserTable::parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn users(text: &str) -> (tempfile::TempDir, Users) {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, text).expect("write");
        let users = Users::load(&path).expect("load");
        (dir, users)
    }

    fn asking(header: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(AUTHORIZATION, MetadataValue::try_from(header).expect("ascii"));
        m
    }

    fn refusal(users: &Users, metadata: &MetadataMap) -> String {
        let s = users.authenticate(metadata).expect_err("refused");
        assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
        s.message().to_string()
    }

    #[test]
    fn the_right_key_passes_and_every_wrong_one_is_refused_with_upstreams_text() {
        let file = format!("[users]\nalice = \"{}\"\n", hash_api_key("alice-key-0123456789"));
        let (_dir, users) = users(&file);
        users.authenticate(&asking("Bearer alice:alice-key-0123456789")).expect("good credentials");
        assert_eq!(refusal(&users, &MetadataMap::new()), "Missing authorization header");
        assert_eq!(refusal(&users, &asking("Bearer alice:alice-key-0123456788")), "Invalid credentials");
        assert_eq!(refusal(&users, &asking("Bearer bob:alice-key-0123456789")), "Invalid credentials");
        assert_eq!(refusal(&users, &asking("Bearer alice:short")), "API key too short, minimum length: 16");
        for malformed in ["alice:alice-key-0123456789", "Basic alice:alice-key-0123456789", "Bearer alice"] {
            assert_eq!(
                refusal(&users, &asking(malformed)),
                "Invalid authorization format, expected 'Bearer username:api_key'",
                "{malformed}"
            );
        }
    }

    #[test]
    fn min_key_length_comes_from_the_file() {
        let file = format!("[users]\nu = \"{}\"\n[security]\nmin_key_length = 4\n", hash_api_key("abcd"));
        let (_dir, users) = users(&file);
        users.authenticate(&asking("Bearer u:abcd")).expect("four characters are enough here");
    }

    #[test]
    fn a_bad_file_is_refused_and_a_failed_reload_keeps_the_users() {
        let file = format!("[users]\nalice = \"{}\"\n", hash_api_key("alice-key-0123456789"));
        let (dir, users) = users(&file);
        let path = dir.path().join("auth.toml");
        for broken in ["[users]\nalice = \"nothex\"\n", "[users\n", "[users]\n[extra]\nx = 1\n"] {
            std::fs::write(&path, broken).expect("write");
            let err = users.reload().expect_err("broken file");
            assert!(err.contains("auth.toml"), "the error names the file: {err}");
            users.authenticate(&asking("Bearer alice:alice-key-0123456789")).expect("old users still valid");
        }
        std::fs::write(&path, format!("[users]\nbob = \"{}\"\n", hash_api_key("bob-key-0123456789ab"))).expect("w");
        assert_eq!(users.reload().expect("good file"), 1);
        users.authenticate(&asking("Bearer bob:bob-key-0123456789ab")).expect("added user");
        assert_eq!(refusal(&users, &asking("Bearer alice:alice-key-0123456789")), "Invalid credentials");
    }
}
