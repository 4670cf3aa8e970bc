//! A bearer token read from a file (a projected service-account token), re-read as soon
//! as the file changes, so a rotated token is used from the next request on.
//!
//! kube's own `token_file` re-reads at most once a minute and keeps a trailing newline;
//! a watch that reconnects right after a rotation would then fail for up to a minute.
//! Here every request checks the file's modification time and size (one `stat`), and the
//! token is trimmed, as client-go does.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use hyper::header::HeaderValue;

use super::TopologyError;

/// The token file and the header made from its current content.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    current: Mutex<Stamped>,
}

#[derive(Debug)]
struct Stamped {
    stamp: Option<(SystemTime, u64)>,
    header: HeaderValue,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn header(path: &Path) -> Result<HeaderValue, TopologyError> {
    let token = fs::read_to_string(path)
        .map_err(|e| TopologyError::Config(format!("cannot read token file {path:?}: {e}")))?;
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
        TopologyError::Config(format!("token file {path:?} holds an invalid token"))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl TokenFile {
    /// Reads the file once; fails if it cannot be read.
    pub fn open(path: &Path) -> Result<TokenFile, TopologyError> {
        let current = Stamped {
            stamp: stamp(path),
            header: header(path)?,
        };
        Ok(TokenFile {
            path: path.to_owned(),
            current: Mutex::new(current),
        })
    }

    /// The `Authorization` header for the next request. If the file changed it is read
    /// again; if it became unreadable, the last token stays in use.
    pub fn authorization(&self) -> HeaderValue {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.path);
        if now.is_some() && now != current.stamp {
            if let Ok(fresh) = header(&self.path) {
                *current = Stamped {
                    stamp: now,
                    header: fresh,
                };
            }
        }
        current.header.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_is_read_at_once_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("swarm-token-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        fs::write(&path, "first\n").unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert_eq!(file.authorization(), "Bearer first");
        fs::write(&path, "second-token").unwrap();
        assert_eq!(file.authorization(), "Bearer second-token");
        fs::remove_file(&path).unwrap();
        assert_eq!(
            file.authorization(),
            "Bearer second-token",
            "the last token stays"
        );
        assert!(TokenFile::open(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
