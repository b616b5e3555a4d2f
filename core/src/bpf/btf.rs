//! Field offsets from the kernel's own type information (`/sys/kernel/btf/vmlinux`): the hook
//! reads the writer's pids, parent and network namespace out of `struct task_struct`, whose
//! layout differs between kernel builds. This is the small part of CO-RE the hook needs.

use std::collections::HashMap;

/// Byte offsets the hook program reads the writer through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.pid` (the thread id), `u32`.
    pub pid: u32,
    /// `task_struct.tgid` (the process id), `u32`.
    pub tgid: u32,
    /// `task_struct.comm`, `char[16]`.
    pub comm: u32,
    /// `task_struct.real_parent`, a pointer.
    pub real_parent: u32,
    /// `task_struct.nsproxy`, a pointer.
    pub nsproxy: u32,
    /// `nsproxy.net_ns`, a pointer.
    pub net_ns: u32,
    /// `net.ns.inum`: the inode number `/proc/PID/ns/net` shows, `u32`.
    pub netns_inum: u32,
    /// `task_struct.group_leader`, a pointer.
    pub group_leader: u32,
    /// `task_struct.thread_pid`, a pointer to `struct pid`.
    pub thread_pid: u32,
    /// `pid.level`: how deep the task's pid namespace is (0: the initial one), `u32`.
    pub pid_level: u32,
    /// `pid.numbers`: one `struct upid` per level, from 0.
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`, and its `nr` (`i32`) and `ns` (a pointer).
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    /// `pid_namespace.ns.inum`: the inode number `/proc/PID/ns/pid` shows, `u32`.
    pub pidns_inum: u32,
}

/// Why the offsets could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("BTF has no {0}")]
    Missing(String),
}

const MAGIC: u16 = 0xeb9f;

// BTF kinds (`include/uapi/linux/btf.h`).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    /// In bits.
    offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// The referenced type for modifiers and typedefs.
    ty: u32,
    members: Vec<Member>,
}

/// The parsed type section, only as far as structs, unions and what points at them.
#[derive(Debug)]
pub struct Btf {
    /// Index = type id (0 is `void`).
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BtfError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(BtfError::Malformed("truncated"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    /// Parses raw BTF as the kernel exposes it (little-endian hosts only, like the hook).
    pub fn parse(raw: &[u8]) -> Result<Self, BtfError> {
        if u16_at(raw, 0)? != MAGIC {
            return Err(BtfError::Malformed(
                "bad magic (not BTF, or another byte order)",
            ));
        }
        let hdr_len = u32_at(raw, 4)? as usize;
        let type_off = u32_at(raw, 8)? as usize;
        let type_len = u32_at(raw, 12)? as usize;
        let str_off = u32_at(raw, 16)? as usize;
        let str_len = u32_at(raw, 20)? as usize;
        let section = |off: usize, len: usize| {
            raw.get(hdr_len + off..hdr_len + off + len)
                .ok_or(BtfError::Malformed("section out of bounds"))
        };
        let types_raw = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();

        let mut types = vec![Type {
            name: 0,
            kind: 0,
            ty: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < types_raw.len() {
            let name = u32_at(types_raw, at)?;
            let info = u32_at(types_raw, at + 4)?;
            let size_or_type = u32_at(types_raw, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(types_raw, m + 8)?;
                        members.push(Member {
                            name: u32_at(types_raw, m)?,
                            ty: u32_at(types_raw, m + 4)?,
                            // With kind_flag the top 8 bits are a bitfield's size.
                            offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            at += extra;
            types.push(Type {
                name,
                kind,
                ty: size_or_type,
                members,
            });
        }
        let mut this = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, t) in this.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 {
                let name = this.name(t.name).to_owned();
                this.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(this)
    }

    fn name(&self, off: u32) -> &str {
        let tail = self.strings.get(off as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the type itself.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.ty
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `field` in struct `strukt`, looking into anonymous structs and unions
    /// (newer kernels wrap fields in them), and the field's type id.
    fn field_in(&self, t: &Type, field: &str) -> Option<(u32, u32)> {
        for m in &t.members {
            if m.name != 0 && self.name(m.name) == field {
                return Some((m.offset / 8, m.ty));
            }
            if m.name == 0 {
                let inner = self.resolve(m.ty)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some((off, ty)) = self.field_in(inner, field)
                {
                    return Some((m.offset / 8 + off, ty));
                }
            }
        }
        None
    }

    /// Byte offset of a dotted path of fields (`"ns.inum"`) inside `struct strukt`.
    pub fn offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing(format!("struct {strukt}.{path}"));
        let id = *self.structs.get(strukt).ok_or_else(missing)?;
        let mut t = self.resolve(id).ok_or_else(missing)?;
        let mut total = 0;
        let mut fields = path.split('.').peekable();
        while let Some(f) = fields.next() {
            let (off, ty) = self.field_in(t, f).ok_or_else(missing)?;
            total += off;
            if fields.peek().is_some() {
                t = self.resolve(ty).ok_or_else(missing)?;
            }
        }
        Ok(total)
    }

    /// The offsets the hook needs.
    pub fn task_offsets(&self) -> Result<TaskOffsets, BtfError> {
        Ok(TaskOffsets {
            pid: self.offset("task_struct", "pid")?,
            tgid: self.offset("task_struct", "tgid")?,
            comm: self.offset("task_struct", "comm")?,
            real_parent: self.offset("task_struct", "real_parent")?,
            nsproxy: self.offset("task_struct", "nsproxy")?,
            net_ns: self.offset("nsproxy", "net_ns")?,
            netns_inum: self.offset("net", "ns.inum")?,
            group_leader: self.offset("task_struct", "group_leader")?,
            thread_pid: self.offset("task_struct", "thread_pid")?,
            pid_level: self.offset("pid", "level")?,
            pid_numbers: self.offset("pid", "numbers")?,
            // { int nr; struct pid_namespace *ns; }: the pointer is the last member.
            upid_size: self.offset("upid", "ns")? + 8,
            upid_nr: self.offset("upid", "nr")?,
            upid_ns: self.offset("upid", "ns")?,
            pidns_inum: self.offset("pid_namespace", "ns.inum")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: `int`, `struct inner { int a; int inum; }`,
    /// `struct outer { int x; union { int y; struct inner ns; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0inum\0outer\0x\0y\0ns\0".to_vec();
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap()
        };
        let mut types = Vec::new();
        let mut ty = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int (4 bytes)
        ty(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner, 2 members
        ty(&[s("inner"), KIND_STRUCT << 24 | 2, 8]);
        ty(&[s("a"), 1, 0, s("inum"), 1, 32]);
        // 3: anonymous union { int y; struct inner ns; }
        ty(&[0, KIND_UNION << 24 | 2, 8]);
        ty(&[s("y"), 1, 0, s("ns"), 2, 0]);
        // 4: struct outer { int x; union ...; } (offsets in bits)
        ty(&[s("outer"), KIND_STRUCT << 24 | 2, 16]);
        ty(&[s("x"), 1, 0, 0, 3, 64]);
        let mut raw = Vec::new();
        raw.extend_from_slice(&MAGIC.to_le_bytes());
        raw.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            raw.extend_from_slice(&w.to_le_bytes());
        }
        raw.extend_from_slice(&types);
        raw.extend_from_slice(&strings);
        raw
    }

    #[test]
    fn finds_fields_through_anonymous_unions() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset("outer", "x"), Ok(0));
        assert_eq!(btf.offset("outer", "y"), Ok(8));
        assert_eq!(btf.offset("outer", "ns.inum"), Ok(12));
        assert_eq!(btf.offset("inner", "inum"), Ok(4));
    }

    #[test]
    fn missing_fields_and_bad_blobs_are_errors() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(
            btf.offset("outer", "nope"),
            Err(BtfError::Missing("struct outer.nope".into()))
        );
        assert!(btf.offset("task_struct", "pid").is_err());
        assert!(Btf::parse(b"\x9f\xeb\x01").is_err());
        assert!(Btf::parse(&[0u8; 32]).is_err());
    }
}
