//! The sysctl hook's program, built without I/O: the assembler ([`asm`]), the program and the
//! verifier rules it keeps ([`program`]), and the kernel's BTF read for field offsets
//! ([`btf`], bytes in, offsets out). The binary loads, attaches and reads it.

pub mod asm;
pub mod btf;
pub mod program;

/// Most keys with action `prevent` (each is one name in the program, `ip_forward` two).
pub const MAX_PREVENT: usize = 500;
