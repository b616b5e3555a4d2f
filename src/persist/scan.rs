//! Reads persisted settings from a host (`/`) or from an image or chroot below a root
//! directory. Symlinks are resolved one component at a time inside the root, as `chroot`
//! would: an absolute target starts again at the root and `..` stops there, so nothing outside
//! the root is ever read. Bad input (unreadable, binary, huge, a symlink loop) is reported
//! with its path and skipped; the rest is still read.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use super::Unreadable;
use super::resolve::{FileState, SYSCTL_CONF, SYSCTL_D, SYSTEMD_SYSCTL, Tree};

/// Larger files are skipped: no sysctl, network or Docker configuration is this big.
pub const MAX_FILE: u64 = 1 << 20;
/// As Linux's `MAXSYMLINKS`.
const MAX_LINKS: u32 = 40;

/// What reading a file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `real` is the resolved path as seen from the root.
    Text {
        text: String,
        real: String,
    },
    /// A symlink to `/dev/null`.
    DevNull,
    Missing,
    Bad(String),
}

/// The directory everything is read below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn host() -> Self {
        Self::new(Path::new("/"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path on this machine of `logical` (a path as seen inside the root).
    pub fn host_path(&self, logical: &str) -> PathBuf {
        self.dir.join(logical.trim_start_matches('/'))
    }

    /// Resolves every symlink in `logical` inside the root; returns the resolved path as
    /// seen inside the root.
    pub fn resolve(&self, logical: &str) -> io::Result<String> {
        let mut pending: VecDeque<String> = split(logical);
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => done.push(c),
            }
            // An image may have no /dev: a link to /dev/null is a mask, whatever is there.
            if done.iter().chain(&pending).eq(["dev", "null"].iter()) {
                return Ok("/dev/null".into());
            }
            let host = self.dir.join(done.join("/"));
            let meta = fs::symlink_metadata(&host)?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(
                        "too many levels of symbolic links (a loop?)",
                    ));
                }
                let target = fs::read_link(&host)?;
                let target = target.to_string_lossy();
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                let mut next = split(&target);
                next.extend(pending);
                pending = next;
            }
        }
        Ok(format!("/{}", done.join("/")))
    }

    /// Reads a text file, at most [`MAX_FILE`] bytes.
    pub fn read(&self, logical: &str) -> Found {
        let real = match self.resolve(logical) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling link is worth saying; a file that is not there is not.
                return match fs::symlink_metadata(self.host_path(logical)) {
                    Ok(m) if m.file_type().is_symlink() => {
                        Found::Bad("dangling symbolic link".into())
                    }
                    _ => Found::Missing,
                };
            }
            Err(e) => return Found::Bad(e.to_string()),
        };
        if real == "/dev/null" {
            return Found::DevNull;
        }
        let host = self.host_path(&real);
        match read_regular(&host) {
            Ok(text) => Found::Text { text, real },
            Err(e) => Found::Bad(e),
        }
    }

    /// The names in a directory; `Ok(None)` if it does not exist.
    pub fn list(&self, logical: &str) -> Result<Option<Vec<String>>, String> {
        let real = match self.resolve(logical) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let entries = match fs::read_dir(self.host_path(&real)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            match entry.file_name().into_string() {
                Ok(n) => names.push(n),
                Err(raw) => return Err(format!("file name {raw:?} is not UTF-8")),
            }
        }
        names.sort();
        Ok(Some(names))
    }

    /// An executable regular file is there.
    pub fn is_executable(&self, logical: &str) -> bool {
        self.resolve(logical)
            .ok()
            .and_then(|r| fs::metadata(self.host_path(&r)).ok())
            .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    /// The `*.conf` files of a directory, each read; problems go to `bad`.
    pub fn conf_dir(
        &self,
        dir: &str,
        suffix: &str,
        bad: &mut Vec<Unreadable>,
    ) -> Option<Vec<(String, Found)>> {
        let names = match self.list(dir) {
            Ok(n) => n?,
            Err(error) => {
                bad.push(Unreadable {
                    path: dir.to_owned(),
                    error,
                });
                return None;
            }
        };
        let mut out = Vec::new();
        for name in names.into_iter().filter(|n| n.ends_with(suffix)) {
            let path = format!("{dir}/{name}");
            let found = self.read(&path);
            if let Found::Bad(error) = &found {
                bad.push(Unreadable {
                    path,
                    error: error.clone(),
                });
            }
            out.push((name, found));
        }
        Some(out)
    }
}

fn split(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a regular file without following a last-moment symlink and without blocking on a
/// FIFO; refuses binary and huge files.
fn read_regular(path: &Path) -> Result<String, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{} bytes, larger than the {} bytes fwdguard reads; skipped",
            meta.len(),
            MAX_FILE
        ));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!(
            "larger than the {MAX_FILE} bytes fwdguard reads; skipped"
        ));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(format!("binary file (NUL byte on line {line}); skipped"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads the sysctl files of `root` into a [`Tree`].
pub fn scan(root: &Root) -> (Tree, Vec<Unreadable>) {
    let mut bad = Vec::new();
    let mut tree = Tree {
        systemd_sysctl: root.is_executable(SYSTEMD_SYSCTL),
        ..Tree::default()
    };
    for dir in SYSCTL_D {
        let Some(files) = root.conf_dir(dir, ".conf", &mut bad) else {
            continue;
        };
        let files = files
            .into_iter()
            .filter_map(|(name, found)| Some((name, state(found)?)))
            .collect();
        tree.dirs.insert(dir.to_owned(), files);
    }
    let conf = root.read(SYSCTL_CONF);
    if let Found::Bad(error) = &conf {
        bad.push(Unreadable {
            path: SYSCTL_CONF.into(),
            error: error.clone(),
        });
    }
    tree.sysctl_conf = state(conf);
    (tree, bad)
}

fn state(found: Found) -> Option<FileState> {
    match found {
        Found::Text { text, real } => Some(FileState::Text { text, real }),
        Found::DevNull => Some(FileState::Masked),
        Found::Bad(_) => Some(FileState::Skipped),
        Found::Missing => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = Root::new(d.path());
        fs::create_dir_all(d.path().join("etc/sysctl.d")).expect("mkdir");
        fs::write(
            d.path().join("etc/sysctl.conf"),
            "net.ipv4.ip_forward = 0\n",
        )
        .expect("w");
        // Absolute, relative and escaping links all land inside the root.
        symlink(
            "../sysctl.conf",
            d.path().join("etc/sysctl.d/99-sysctl.conf"),
        )
        .expect("l");
        symlink("/etc/sysctl.conf", d.path().join("etc/sysctl.d/abs.conf")).expect("l");
        symlink(
            "../../../../../../etc/passwd",
            d.path().join("etc/sysctl.d/esc.conf"),
        )
        .expect("l");
        symlink("/dev/null", d.path().join("etc/sysctl.d/masked.conf")).expect("l");
        symlink("loop2.conf", d.path().join("etc/sysctl.d/loop1.conf")).expect("l");
        symlink("loop1.conf", d.path().join("etc/sysctl.d/loop2.conf")).expect("l");
        let (tree, bad) = scan(&root);
        let etc = &tree.dirs["/etc/sysctl.d"];
        assert!(
            matches!(&etc["99-sysctl.conf"], FileState::Text { real, .. } if real == "/etc/sysctl.conf")
        );
        assert!(
            matches!(&etc["abs.conf"], FileState::Text { real, .. } if real == "/etc/sysctl.conf")
        );
        assert_eq!(etc["masked.conf"], FileState::Masked);
        // The host's /etc/passwd is never read: inside the root it does not exist.
        assert_eq!(etc["esc.conf"], FileState::Skipped);
        let paths: Vec<&str> = bad.iter().map(|b| b.path.as_str()).collect();
        assert!(paths.contains(&"/etc/sysctl.d/esc.conf"), "{bad:?}");
        assert!(
            bad.iter()
                .any(|b| b.path == "/etc/sysctl.d/loop1.conf" && b.error.contains("symbolic links")),
            "{bad:?}"
        );
    }

    #[test]
    fn binary_and_huge_files_are_reported() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = Root::new(d.path());
        fs::create_dir_all(d.path().join("etc/sysctl.d")).expect("mkdir");
        fs::write(d.path().join("etc/sysctl.d/bin.conf"), b"a=1\nb\0c\n").expect("w");
        let big = fs::File::create(d.path().join("etc/sysctl.d/big.conf")).expect("c");
        big.set_len(MAX_FILE + 1).expect("len");
        fs::write(
            d.path().join("etc/sysctl.d/ok.conf"),
            "net.ipv4.ip_forward=1\n",
        )
        .expect("w");
        let (tree, bad) = scan(&root);
        assert!(matches!(
            tree.dirs["/etc/sysctl.d"]["ok.conf"],
            FileState::Text { .. }
        ));
        let msg = |p: &str| {
            bad.iter()
                .find(|b| b.path == p)
                .map(|b| b.error.clone())
                .unwrap_or_default()
        };
        assert!(
            msg("/etc/sysctl.d/bin.conf").contains("NUL byte on line 2"),
            "{bad:?}"
        );
        assert!(
            msg("/etc/sysctl.d/big.conf").contains("larger than"),
            "{bad:?}"
        );
    }
}
