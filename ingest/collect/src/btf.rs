//! Struct member offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`). Rust eBPF has no CO-RE, so the exec
//! program reads `task_struct` and its neighbours (credentials, open files, controlling terminal, the argument
//! area of the new image, the exit status) at offsets the loader looks up here at start-up and passes as globals.

use std::collections::HashMap;

const MAGIC: u16 = 0xEB9F;

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF data is malformed: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("BTF struct `{0}` has no member `{1}` (or it is a bit field)")]
    NoMember(String, String),
}

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield: bool,
}

struct Type {
    kind: u32,
    name_off: u32,
    /// Referenced type for typedef/const/volatile/restrict/type tag.
    target: u32,
    members: Vec<Member>,
}

/// The parsed type section: enough to find members of named structs, through anonymous structs and unions.
pub struct Btf {
    strings: Vec<u8>,
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
}

fn u32_at(data: &[u8], offset: usize) -> Result<u32, BtfError> {
    let bytes = data.get(offset..offset + 4).ok_or(BtfError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
}

impl Btf {
    pub fn from_kernel() -> Result<Self, String> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
        Self::parse(&data).map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("no BTF magic (little-endian 0xeB9F)"));
        }
        let header_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types_data = data
            .get(header_len + type_off..header_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section beyond the data"))?;
        let strings = data
            .get(header_len + str_off..header_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section beyond the data"))?
            .to_vec();
        let mut types = vec![Type { kind: 0, name_off: 0, target: 0, members: Vec::new() }];
        let mut offset = 0;
        while offset < types_data.len() {
            let name_off = u32_at(types_data, offset)?;
            let info = u32_at(types_data, offset + 4)?;
            let size_or_type = u32_at(types_data, offset + 8)?;
            offset += 12;
            let kind = (info >> 24) & 0x1F;
            let vlen = (info & 0xFFFF) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let trailing = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC
                | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for index in 0..vlen {
                        let at = offset + index * 12;
                        let raw_offset = u32_at(types_data, at + 8)?;
                        members.push(Member {
                            name_off: u32_at(types_data, at)?,
                            type_id: u32_at(types_data, at + 4)?,
                            bit_offset: if kind_flag { raw_offset & 0xFF_FFFF } else { raw_offset },
                            bitfield: kind_flag && raw_offset >> 24 != 0,
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            offset += trailing;
            types.push(Type { kind, name_off, target: size_or_type, members });
        }
        let mut btf = Self { strings, types, structs_by_name: HashMap::new() };
        for (id, entry) in btf.types.iter().enumerate() {
            if entry.kind == KIND_STRUCT && entry.name_off != 0 {
                let name = btf.name(entry.name_off).to_owned();
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or_default()
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(entry)
                    if matches!(
                        entry.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = entry.target
                }
                _ => break,
            }
        }
        id
    }

    /// Bit offset of `member` in the struct or union `id`, searching anonymous members too.
    fn find(&self, id: u32, member: &str) -> Option<(u32, bool)> {
        let entry = self.types.get(self.resolve(id) as usize)?;
        if !matches!(entry.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for candidate in &entry.members {
            if candidate.name_off == 0 {
                if let Some((inner, bitfield)) = self.find(candidate.type_id, member) {
                    return Some((candidate.bit_offset + inner, bitfield));
                }
            } else if self.name(candidate.name_off) == member {
                return Some((candidate.bit_offset, candidate.bitfield));
            }
        }
        None
    }

    /// Byte offset of `member` in `struct name`.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self.structs_by_name.get(name).ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        match self.find(id, member) {
            Some((bits, false)) if bits % 8 == 0 => Ok(bits / 8),
            _ => Err(BtfError::NoMember(name.to_owned(), member.to_owned())),
        }
    }
}

/// The offsets the programs need, in the order of the kernel side's `TASK_OFFSETS` global.
pub const TASK_MEMBERS: [(&str, &str); palisade_collect_common::TASK_OFFSET_SLOTS] = [
    ("task_struct", "cred"),
    ("cred", "euid"),
    ("cred", "cap_effective"),
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "fd"),
    ("file", "f_inode"),
    ("inode", "i_mode"),
    ("inode", "i_rdev"),
    ("task_struct", "signal"),
    ("signal_struct", "tty"),
    ("tty_struct", "name"),
    ("task_struct", "mm"),
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
    ("task_struct", "exit_code"),
    ("file", "private_data"),
    ("inode", "i_private"),
    ("pid", "numbers"),
    ("upid", "nr"),
    ("inode", "i_ino"),
    ("inode", "i_sb"),
    ("super_block", "s_dev"),
    ("file", "f_flags"),
    ("fdtable", "max_fds"),
];

pub fn task_offsets(btf: &Btf) -> Result<[u32; palisade_collect_common::TASK_OFFSET_SLOTS], BtfError> {
    let mut offsets = [0u32; palisade_collect_common::TASK_OFFSET_SLOTS];
    for (slot, (structure, member)) in offsets.iter_mut().zip(TASK_MEMBERS) {
        *slot = btf.member_offset(structure, member)?;
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: `struct outer { int a; union { int b; struct inner c; }; }` and `struct inner { int x; int y; }`.
    fn synthetic() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0inner\0x\0y\0".to_vec();
        let at = |s: &str| {
            let needle = format!("\0{s}\0");
            strings.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() as u32 + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        // 1: int (size 4, 32 bits)
        push(&[at("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { int x @0; int y @32 }
        push(&[at("inner"), (KIND_STRUCT << 24) | 2, 8, at("x"), 1, 0, at("y"), 1, 32]);
        // 3: anonymous union { int b @0; struct inner c @0 }
        push(&[0, (KIND_UNION << 24) | 2, 8, at("b"), 1, 0, at("c"), 2, 0]);
        // 4: struct outer { int a @0; union @64 }
        push(&[at("outer"), (KIND_STRUCT << 24) | 2, 16, at("a"), 1, 0, 0, 3, 64]);
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for word in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(&strings);
        data
    }

    #[test]
    fn members_are_found_through_anonymous_unions() {
        let btf = Btf::parse(&synthetic()).unwrap();
        assert_eq!(btf.member_offset("outer", "a"), Ok(0));
        assert_eq!(btf.member_offset("outer", "b"), Ok(8));
        assert_eq!(btf.member_offset("inner", "y"), Ok(4));
        assert_eq!(btf.member_offset("outer", "x"), Err(BtfError::NoMember("outer".into(), "x".into())));
        assert_eq!(btf.member_offset("nope", "a"), Err(BtfError::NoStruct("nope".into())));
        assert!(Btf::parse(b"not btf at all, certainly not").is_err());
    }

    #[test]
    fn this_kernel_has_every_member_the_programs_read() {
        let btf = Btf::from_kernel().expect("kernel BTF (CONFIG_DEBUG_INFO_BTF=y on these machines)");
        let offsets = task_offsets(&btf).expect("all members present");
        assert!(offsets[0] > 0, "task_struct.cred is not the first member");
        // Only inode.i_mode, upid.nr and fdtable.max_fds open their structs.
        assert!(offsets.iter().filter(|o| **o > 0).count() >= offsets.len() - 3, "{offsets:?}");
        assert_eq!(offsets[19], 0, "upid.nr");
        assert_eq!(offsets[14] - offsets[13], 8, "mm_struct.arg_end follows arg_start");
    }
}
