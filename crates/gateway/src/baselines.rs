//! Where the judge's learned baselines (amounts and counts per agent and
//! tool) outlive the process.
//!
//! Owns: the [`BaselineStore`] seam and [`FileStore`], a small JSON file
//! beside the audit log (`<audit.path>.baselines.json`) written atomically
//! (a temporary file renamed over the old one). The behaviour layer loads
//! it at start and saves it periodically and at shutdown.

use std::path::{Path, PathBuf};

use castellan_judge::baseline::Learned;
use serde::{Deserialize, Serialize};

/// Why baselines could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file is not a baselines file.
    #[error("{path}: not a baselines file: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Persists each agent's learned baselines.
pub trait BaselineStore: Send + Sync + std::fmt::Debug {
    /// Every agent's baselines saved so far (none when nothing was saved).
    fn load(&self) -> Result<Vec<(String, Learned)>, BaselineError>;
    /// Replaces what is saved.
    fn save(&self, agents: &[(String, Learned)]) -> Result<(), BaselineError>;
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    agents: Vec<(String, Learned)>,
}

/// Baselines in a JSON file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store in `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// The store beside an audit log: `<audit>.baselines.json`.
    pub fn beside(audit: &Path) -> FileStore {
        let mut p = audit.as_os_str().to_owned();
        p.push(".baselines.json");
        FileStore::new(p)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: std::io::Error) -> BaselineError {
        BaselineError::Io {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl BaselineStore for FileStore {
    fn load(&self) -> Result<Vec<(String, Learned)>, BaselineError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let f: FileFormat = serde_json::from_slice(&bytes).map_err(|e| BaselineError::Format {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        if f.version != 1 {
            return Err(BaselineError::Format {
                path: self.path.display().to_string(),
                message: format!("unknown version {}", f.version),
            });
        }
        Ok(f.agents)
    }

    fn save(&self, agents: &[(String, Learned)]) -> Result<(), BaselineError> {
        let body = serde_json::to_vec(&FileFormat {
            version: 1,
            agents: agents.to_vec(),
        })
        .map_err(|e| BaselineError::Format {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, body).map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("castellan-bl-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let store = FileStore::beside(&dir.join("audit.db"));
        assert!(store.load().expect("missing is empty").is_empty());
        std::fs::write(store.path(), b"{nope").expect("write");
        let e = store.load().expect_err("broken");
        assert!(e.to_string().contains("audit.db.baselines.json"), "{e}");
        store
            .save(&[("bot".into(), Learned::default())])
            .expect("save");
        assert_eq!(store.load().expect("load").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
