//! The cgroup v2 side of the hook: where to attach it, and what a writer's cgroup id means
//! (a path such as `/system.slice/network.service`, hence a systemd unit or a container).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sys;

/// The cgroup2 hierarchy's root as this process sees it.
#[derive(Debug)]
pub struct Root {
    /// An open directory of the root, to attach to.
    pub dir: OwnedFd,
    /// Where it is mounted, or `/proc/self/fd/N` of a private mount.
    pub path: PathBuf,
    /// Whether fwdguard mounted it itself (a cgroup v1-only host).
    pub private: bool,
}

/// Where cgroup2 is mounted, from a `/proc/self/mountinfo` text.
pub fn cgroup2_mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let fields: Vec<&str> = left.split_whitespace().collect();
        // Only a mount of the hierarchy's root: a bind of a subtree would not cover all.
        let point = fields.get(4)?;
        (fstype == "cgroup2" && fields.get(3) == Some(&"/")).then(|| PathBuf::from(unescape(point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Root {
    /// The mounted cgroup2 root, or, where nothing mounts cgroup2 (a v1-only host), a private
    /// mount of it that is attached nowhere and seen by nobody else. The v2 hierarchy always
    /// exists; on a v1-only host every process sits in its root, so attaching there covers all.
    pub fn find() -> io::Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        if let Some(path) = cgroup2_mount_point(&mountinfo) {
            let dir = File::open(&path)?.into();
            return Ok(Self {
                dir,
                path,
                private: false,
            });
        }
        Self::find_private()
    }

    /// A private mount of the cgroup2 hierarchy, attached nowhere and seen by nobody else
    /// (`fsopen`/`fsmount`, 5.2+); it goes away with its descriptor.
    pub fn find_private() -> io::Result<Self> {
        let dir = sys::cgroup2_detached_mount().map_err(|e| {
            let hint = match e.raw_os_error() {
                // The packaged unit denies @mount and CAP_SYS_ADMIN; its BPF drop-in does not
                // grant them either.
                Some(libc::EPERM) => {
                    " (no cgroup2 mounted, as on a cgroup v1-only host: mounting it takes CAP_SYS_ADMIN and the mount system calls)"
                }
                _ => "",
            };
            io::Error::new(e.kind(), format!("mount cgroup2 privately: {e}{hint}"))
        })?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            dir.as_raw_fd()
        }));
        Ok(Self {
            dir,
            path,
            private: true,
        })
    }

    /// A directory under this root, to attach to instead of the root (tests).
    pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
        let f = File::open(path)?;
        if !f.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(f.into())
    }
}

/// Where a writer runs, derived from its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The cgroup path relative to the cgroup2 root, `/system.slice/network.service`; `None`
    /// when the cgroup is gone already.
    pub cgroup: Option<String>,
    /// The innermost systemd unit (`network.service`, `docker-ID.scope`, `session-3.scope`).
    pub unit: Option<String>,
    /// The container, `docker:0123456789ab`, when the path shows one.
    pub container: Option<String>,
}

const UNIT_SUFFIXES: [&str; 4] = [".service", ".scope", ".socket", ".mount"];

/// The unit and container a cgroup path names.
pub fn placement(path: &str) -> Placement {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let unit = parts
        .iter()
        .rev()
        .find(|p| UNIT_SUFFIXES.iter().any(|s| p.ends_with(s)))
        .map(|u| (*u).to_owned());
    let container = parts.iter().enumerate().find_map(|(i, p)| {
        let short = |id: &str| id.get(..12).unwrap_or(id).to_owned();
        let hex = |id: &str| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
        ] {
            if let Some(id) = p
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".scope"))
                && hex(id)
            {
                return Some(format!("{runtime}:{}", short(id)));
            }
        }
        // cgroupfs driver: /docker/ID
        (i > 0 && parts[i - 1] == "docker" && hex(p)).then(|| format!("docker:{}", short(p)))
    });
    Placement {
        cgroup: Some(if parts.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}", parts.join("/"))
        }),
        unit,
        container,
    }
}

/// Turns cgroup ids (the inode of the cgroup's directory, which `bpf_get_current_cgroup_id`
/// returns) into paths, by walking the tree; found paths are remembered.
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    known: HashMap<u64, String>,
}

/// How deep and wide a walk may go before giving up (a host has hundreds of cgroups).
const WALK_LIMIT: usize = 20_000;

impl Resolver {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            known: HashMap::new(),
        }
    }

    /// The path of cgroup `id` relative to the root (`/` for the root itself).
    pub fn path(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.known.get(&id) {
            // A cgroup may have gone and its inode been reused: check before trusting it.
            let full = self.root.join(p.trim_start_matches('/'));
            if std::fs::metadata(&full).map(|m| m.ino()).ok() == Some(id) {
                return Some(p.clone());
            }
            self.known.remove(&id);
        }
        let found = self.walk(id)?;
        self.known.insert(id, found.clone());
        Some(found)
    }

    fn walk(&self, id: u64) -> Option<String> {
        let mut stack = vec![(self.root.clone(), String::new())];
        let mut seen = 0;
        while let Some((dir, rel)) = stack.pop() {
            if std::fs::metadata(&dir).map(|m| m.ino()).ok() == Some(id) {
                return Some(if rel.is_empty() { "/".into() } else { rel });
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                seen += 1;
                if seen > WALK_LIMIT {
                    return None;
                }
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    stack.push((e.path(), format!("{rel}/{name}")));
                }
            }
        }
        None
    }

    /// Where cgroup `id` is: its path, unit and container.
    pub fn placement(&mut self, id: u64) -> Placement {
        match self.path(id) {
            Some(p) => placement(&p),
            None => Placement::default(),
        }
    }
}

/// The cgroup id (inode) of a cgroup directory.
pub fn id_of(dir: &OwnedFd) -> io::Result<u64> {
    Ok(File::from(dir.as_fd().try_clone_to_owned()?)
        .metadata()?
        .ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_mountinfo() {
        let hybrid = "\
35 25 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            cgroup2_mount_point(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount_point(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let v1 = "37 35 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(cgroup2_mount_point(v1), None);
        let bind = "40 23 0:26 /sub /mnt/x rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_point(bind),
            None,
            "a subtree does not cover all"
        );
        let spaced = "40 23 0:26 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_point(spaced),
            Some(PathBuf::from("/mnt/cg two"))
        );
    }

    #[test]
    fn units_and_containers_from_paths() {
        let p = placement("/system.slice/network.service");
        assert_eq!(p.unit.as_deref(), Some("network.service"));
        assert_eq!(p.container, None);
        let id = "0123456789abcdef".repeat(4);
        let p = placement(&format!("/system.slice/docker-{id}.scope"));
        assert_eq!(p.unit, Some(format!("docker-{id}.scope")));
        assert_eq!(p.container.as_deref(), Some("docker:0123456789ab"));
        let p = placement(&format!("/docker/{id}"));
        assert_eq!(p.container.as_deref(), Some("docker:0123456789ab"));
        assert_eq!(p.unit, None);
        let p = placement("/user.slice/user-0.slice/session-3.scope");
        assert_eq!(p.unit.as_deref(), Some("session-3.scope"));
        let p = placement("/");
        assert_eq!((p.cgroup.as_deref(), p.unit), (Some("/"), None));
        let p = placement("/system.slice/docker-notanid.scope");
        assert_eq!(p.container, None);
    }

    #[test]
    fn resolves_ids_by_walking_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("system.slice/network.service");
        std::fs::create_dir_all(&deep).unwrap();
        let id = std::fs::metadata(&deep).unwrap().ino();
        let mut r = Resolver::new(dir.path());
        assert_eq!(r.path(id).as_deref(), Some("/system.slice/network.service"));
        assert_eq!(r.placement(id).unit.as_deref(), Some("network.service"));
        // Remembered, and re-checked: once gone it is not reported any more.
        std::fs::remove_dir(&deep).unwrap();
        assert_eq!(r.path(id), None);
        let root = std::fs::metadata(dir.path()).unwrap().ino();
        assert_eq!(r.path(root).as_deref(), Some("/"));
    }
}
