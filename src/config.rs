//! The configuration as the binary reads it: the file itself, and the files and `/proc/sys`
//! values it names, handed to the core's validation ([`Config::parse`]) through [`System`]
//! (or [`Image`], for another system's files).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use fwdguard_core::config::*;

use crate::key::SysctlKey;

/// The machine this process runs on: files are read as they are now.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Host for System {
    fn current(&self, key: &SysctlKey) -> Option<String> {
        std::fs::read_to_string(key.proc_path()).ok()
    }

    fn secret(&self, path: &Path) -> Result<String, String> {
        check_file(path, "file")?;
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("file {}: {e}", path.display()))?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    }

    fn ca_certs(&self, path: &Path) -> Result<Vec<Vec<u8>>, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        check_file(path, "ca-file")?;
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("ca-file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ca-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        Ok(certs.into_iter().map(|c| c.to_vec()).collect())
    }
}

/// Another system's files: an image below `doctor --root`. What its keys hold now is not this
/// host's `/proc/sys`, so a key fwdguard does not know takes any value (numbers normalised);
/// the files a webhook names are read as on this host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Image;

impl Host for Image {
    fn current(&self, _: &SysctlKey) -> Option<String> {
        None
    }

    fn secret(&self, path: &Path) -> Result<String, String> {
        System.secret(path)
    }

    fn ca_certs(&self, path: &Path) -> Result<Vec<Vec<u8>>, String> {
        System.ca_certs(path)
    }
}

/// Reads and validates a file: the one way the daemon (at start and on reload) and the
/// commands read this host's configuration (`doctor --root` parses an image's with [`Image`]). Refuses anything but a regular file (symlinks to one are
/// fine) and files over [`MAX_SIZE`]. A key whose type fwdguard does not know is checked
/// against what its `/proc/sys` file holds now, if it exists.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::parse(&read_regular_file(path)?, path, &System)
}

/// What `fwdguard run` uses without `-c`: the default file if it exists, else the built-in
/// default. A file that exists but is invalid is an error, never silently replaced.
pub fn resolve(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    match explicit {
        Some(path) => load(path),
        None => match load(Path::new(DEFAULT_PATH)) {
            Err(ConfigError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Config::default())
            }
            other => other,
        },
    }
}

/// The whole of `path`, if it is a regular file of at most [`MAX_SIZE`] bytes. Opened
/// non-blocking, so a FIFO at the path is refused instead of waiting for a writer.
fn read_regular_file(path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else {
            "a special file"
        };
        return Err(ConfigError::NotRegular {
            path: path.to_owned(),
            what,
        });
    }
    let too_large = |size| ConfigError::TooLarge {
        path: path.to_owned(),
        size,
    };
    if meta.len() > MAX_SIZE {
        return Err(too_large(meta.len()));
    }
    let mut text = String::new();
    // The file may grow between fstat and read: read one byte past the limit to notice.
    file.take(MAX_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_SIZE {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// Refuses files any user could write: whoever can change a secret or a URL can redirect
/// or forge alerts.
fn check_file(path: &Path, what: &str) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!(
            "{what} {} must be an absolute path",
            path.display()
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{what} {} is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(format!(
            "{what} {} is world-writable: anyone could change it (chmod o-w)",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = resolve(Some(Path::new("/nonexistent/fwdguard.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(
            err.to_string().starts_with("/nonexistent/fwdguard.toml: "),
            "{err}"
        );
    }
}
