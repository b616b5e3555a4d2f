//! A small eBPF assembler: just the instructions the sysctl hook uses, encoded as the kernel
//! reads them (`struct bpf_insn`, `include/uapi/linux/bpf.h`). Jumps are written with labels
//! and resolved when the program is finished, so the program reads top to bottom.

use std::collections::HashMap;

/// A register. `R0` holds return values, `R1`-`R5` helper arguments (clobbered by every call),
/// `R6`-`R9` survive calls, `R10` is the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const FP: Reg = Reg(10);

/// One encoded instruction (8 bytes; `lddw` takes two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src.0 << 4) | dst.0,
            off,
            imm,
        }
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Instruction classes and fields.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;

/// Access sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    W = 0x00,
    B = 0x10,
    DW = 0x18,
}

/// 64-bit ALU operations used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    Add = 0x00,
    And = 0x50,
    Rsh = 0x70,
    Mov = 0xb0,
}

/// Conditions for jumps (`s` = signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Ne = 0x50,
    Sgt = 0x60,
    Sge = 0x70,
    Slt = 0xc0,
    Sle = 0xd0,
}

/// `src` of `lddw` when its immediate is a map file descriptor.
const PSEUDO_MAP_FD: Reg = Reg(1);

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(usize);

/// Builds a program; [`Asm::finish`] resolves the labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    next_label: usize,
    bound: HashMap<Label, usize>,
    /// (instruction index, target) of every jump, patched at the end.
    fixups: Vec<(usize, Label)>,
}

/// A label used but never bound: a bug in the program generator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("BPF program: jump to an unbound label, or a jump too far")]
pub struct UnboundLabel;

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn label(&mut self) -> Label {
        self.next_label += 1;
        Label(self.next_label)
    }

    /// The next instruction is `label`'s target.
    pub fn bind(&mut self, label: Label) {
        self.bound.insert(label, self.insns.len());
    }

    fn push(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }

    /// `dst op= imm`
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(ALU64 | op as u8 | K, dst, R0, 0, imm))
    }

    /// `dst op= src`
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(ALU64 | op as u8 | X, dst, src, 0, 0))
    }

    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu_imm(Alu::Mov, dst, imm)
    }

    pub fn mov_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_reg(Alu::Mov, dst, src)
    }

    /// `dst = imm64` (two instruction slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.push(Insn::new(
            LD | IMM | Size::DW as u8,
            dst,
            R0,
            0,
            imm as u32 as i32,
        ));
        self.push(Insn::new(0, R0, R0, 0, (imm >> 32) as u32 as i32))
    }

    /// `dst = map` (the fd is replaced by the map's address at load time).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(Insn::new(
            LD | IMM | Size::DW as u8,
            dst,
            PSEUDO_MAP_FD,
            0,
            fd,
        ));
        self.push(Insn::new(0, R0, R0, 0, 0))
    }

    /// `dst = *(size *)(src + off)`
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(LDX | MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = src`
    pub fn store_reg(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Insn::new(STX | MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = imm` (sign-extended for `DW`).
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(Insn::new(ST | MEM | size as u8, dst, R0, off, imm))
    }

    /// `if dst cond imm goto label`
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(Insn::new(JMP | cond as u8 | K, dst, R0, 0, imm))
    }

    /// `if dst cond src goto label`
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(Insn::new(JMP | cond as u8 | X, dst, src, 0, 0))
    }

    pub fn goto(&mut self, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(Insn::new(JMP, R0, R0, 0, 0))
    }

    /// Calls helper number `helper` (`enum bpf_func_id`).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(Insn::new(JMP | 0x80, R0, R0, 0, helper))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(Insn::new(JMP | 0x90, R0, R0, 0, 0))
    }

    /// The program, with every jump pointing at its label.
    pub fn finish(mut self) -> Result<Vec<Insn>, UnboundLabel> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = *self.bound.get(&label).ok_or(UnboundLabel)?;
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).map_err(|_| UnboundLabel)?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel_headers() {
        let mut a = Asm::new();
        a.mov_reg(R6, R1) // bf 16 00 00 00 00 00 00
            .load(Size::W, R0, R6, 0) // 61 60 00 00 00 00 00 00
            .store_imm(Size::DW, FP, -8, 0) // 7a 0a f8 ff 00 00 00 00
            .call(101) // 85 00 00 00 65 00 00 00
            .mov_imm(R0, 1) // b7 00 00 00 01 00 00 00
            .exit(); // 95 00 00 00 00 00 00 00
        let bytes: Vec<[u8; 8]> = a
            .finish()
            .unwrap()
            .into_iter()
            .map(Insn::to_bytes)
            .collect();
        assert_eq!(
            bytes,
            vec![
                [0xbf, 0x16, 0, 0, 0, 0, 0, 0],
                [0x61, 0x60, 0, 0, 0, 0, 0, 0],
                [0x7a, 0x0a, 0xf8, 0xff, 0, 0, 0, 0],
                [0x85, 0, 0, 0, 101, 0, 0, 0],
                [0xb7, 0, 0, 0, 1, 0, 0, 0],
                [0x95, 0, 0, 0, 0, 0, 0, 0],
            ]
        );
    }

    #[test]
    fn lddw_takes_two_slots_and_map_fds_are_pseudo() {
        let mut a = Asm::new();
        a.ld_imm64(R1, 0x1122_3344_5566_7788).ld_map_fd(R1, 7);
        let insns = a.finish().unwrap();
        assert_eq!(insns.len(), 4);
        assert_eq!(
            insns[0].to_bytes(),
            [0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55]
        );
        assert_eq!(insns[1].to_bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(insns[2].to_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
    }

    #[test]
    fn jumps_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let (top, end) = (a.label(), a.label());
        a.bind(top);
        a.jump_imm(Cond::Eq, R0, 0, end) // 0: +2
            .ld_imm64(R1, 1) // 1-2
            .goto(top); // 3: -4
        a.bind(end);
        a.exit();
        let insns = a.finish().unwrap();
        assert_eq!(insns[0].off, 3);
        assert_eq!(insns[0].code, 0x15);
        assert_eq!(insns[3].off, -4);
    }

    #[test]
    fn an_unbound_label_is_an_error() {
        let mut a = Asm::new();
        let nowhere = a.label();
        a.goto(nowhere);
        assert_eq!(a.finish(), Err(UnboundLabel));
    }
}
