//! Classic-BPF seccomp filters from `seccomp.img`, evaluated rather than
//! pattern-matched: for every x86_64 syscall number the program is run with
//! `nr` and `arch = AUDIT_ARCH_X86_64` known and the instruction pointer and
//! arguments unknown. A jump on an unknown value follows both branches, so a
//! rule that depends on arguments shows up as "conditional" instead of being
//! guessed. Several stacked filters combine as in the kernel: every filter
//! runs and the most restrictive action wins.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::error::{Error, Result};

/// `AUDIT_ARCH_X86_64` (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

const BPF_MAXINSNS: usize = 4096;
/// `sizeof(struct seccomp_data)`.
const DATA_LEN: u32 = 64;
/// Cap on explored paths per syscall; arguments-heavy filters fork at every
/// argument test, and we would rather say "conditional" than spin.
const MAX_PATHS: usize = 1 << 12;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
const ACTION_MASK: u32 = 0xffff_0000;

/// One `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A decoded filter and the index of the one installed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub insns: Vec<Insn>,
    pub prev: Option<u32>,
}

/// Splits raw `sock_filter` bytes (host order: little endian on x86_64).
pub fn parse_filter(member: &str, index: usize, raw: &[u8]) -> Result<Vec<Insn>> {
    let bad = |reason: String| Error::Filter {
        member: member.to_string(),
        index,
        reason,
    };
    if raw.is_empty() || !raw.chunks_exact(8).remainder().is_empty() {
        return Err(bad(format!(
            "{} bytes is not a whole number of 8-byte instructions",
            raw.len()
        )));
    }
    if raw.len() / 8 > BPF_MAXINSNS {
        return Err(bad(format!(
            "{} instructions, more than BPF_MAXINSNS",
            raw.len() / 8
        )));
    }
    Ok(raw
        .chunks_exact(8)
        .map(|c| Insn {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Known(u32),
    Unknown,
}

#[derive(Clone)]
struct State {
    pc: usize,
    a: Val,
    x: Val,
    mem: [Val; 16],
}

/// What one filter may return for one syscall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Full return values seen (action | data).
    pub returns: BTreeSet<u32>,
    /// A path returned a value computed from unknown data, ran off the end,
    /// hit an invalid instruction or the path budget ran out.
    pub undetermined: bool,
}

/// Runs `prog` for syscall `nr` over all argument values at once.
pub fn run(prog: &[Insn], nr: u32, arch: u32) -> Outcomes {
    let mut out = Outcomes::default();
    let mut stack = vec![State {
        pc: 0,
        a: Val::Known(0),
        x: Val::Known(0),
        mem: [Val::Known(0); 16],
    }];
    let mut paths = 0usize;
    while let Some(mut st) = stack.pop() {
        paths += 1;
        if paths > MAX_PATHS {
            out.undetermined = true;
            break;
        }
        loop {
            let Some(insn) = prog.get(st.pc) else {
                out.undetermined = true;
                break;
            };
            let code = insn.code;
            let k = insn.k;
            st.pc += 1;
            match code & 0x07 {
                // BPF_LD
                0x00 => {
                    st.a = match code & 0xe0 {
                        0x00 => Val::Known(k),        // IMM
                        0x80 => Val::Known(DATA_LEN), // LEN
                        0x60 => st.mem.get(k as usize).copied().unwrap_or(Val::Unknown),
                        0x20 if code & 0x18 == 0 => load(k, nr, arch), // W|ABS
                        _ => {
                            out.undetermined = true;
                            break;
                        }
                    }
                }
                // BPF_LDX
                0x01 => {
                    st.x = match code & 0xe0 {
                        0x00 => Val::Known(k),
                        0x80 => Val::Known(DATA_LEN),
                        0x60 => st.mem.get(k as usize).copied().unwrap_or(Val::Unknown),
                        _ => {
                            out.undetermined = true;
                            break;
                        }
                    }
                }
                // BPF_ST / BPF_STX
                0x02 | 0x03 => {
                    let v = if code & 0x07 == 0x02 { st.a } else { st.x };
                    match st.mem.get_mut(k as usize) {
                        Some(slot) => *slot = v,
                        None => {
                            out.undetermined = true;
                            break;
                        }
                    }
                }
                // BPF_ALU
                0x04 => {
                    let src = if code & 0x08 != 0 {
                        st.x
                    } else {
                        Val::Known(k)
                    };
                    st.a = match (code & 0xf0, st.a, src) {
                        (0x80, Val::Known(a), _) => Val::Known(a.wrapping_neg()),
                        (0x80, Val::Unknown, _) => Val::Unknown,
                        (op, Val::Known(a), Val::Known(b)) => match alu(op, a, b) {
                            Some(v) => Val::Known(v),
                            None => {
                                // Division by zero makes the kernel return 0
                                // (kill); treat as an undetermined path.
                                out.undetermined = true;
                                break;
                            }
                        },
                        _ => Val::Unknown,
                    }
                }
                // BPF_JMP
                0x05 => {
                    let op = code & 0xf0;
                    if op == 0x00 {
                        st.pc = st.pc.saturating_add(k as usize);
                        continue;
                    }
                    let src = if code & 0x08 != 0 {
                        st.x
                    } else {
                        Val::Known(k)
                    };
                    let taken = match (st.a, src) {
                        (Val::Known(a), Val::Known(b)) => match op {
                            0x10 => Some(a == b),
                            0x20 => Some(a > b),
                            0x30 => Some(a >= b),
                            0x40 => Some(a & b != 0),
                            _ => {
                                out.undetermined = true;
                                break;
                            }
                        },
                        _ => None,
                    };
                    let t = st.pc + insn.jt as usize;
                    let f = st.pc + insn.jf as usize;
                    match taken {
                        Some(true) => st.pc = t,
                        Some(false) => st.pc = f,
                        None => {
                            // Unknown operand: both ways are possible.
                            let mut other = st.clone();
                            other.pc = f;
                            stack.push(other);
                            st.pc = t;
                        }
                    }
                }
                // BPF_RET
                0x06 => {
                    match code & 0x18 {
                        0x00 => {
                            out.returns.insert(k);
                        }
                        0x10 => match st.a {
                            Val::Known(a) => {
                                out.returns.insert(a);
                            }
                            Val::Unknown => out.undetermined = true,
                        },
                        _ => out.undetermined = true,
                    }
                    break;
                }
                // BPF_MISC
                _ => {
                    if code & 0xf8 == 0x80 {
                        st.a = st.x; // TXA
                    } else {
                        st.x = st.a; // TAX
                    }
                }
            }
        }
    }
    out
}

fn load(off: u32, nr: u32, arch: u32) -> Val {
    match off {
        0 => Val::Known(nr),
        4 => Val::Known(arch),
        // instruction_pointer and args[6]: anything.
        _ => Val::Unknown,
    }
}

fn alu(op: u16, a: u32, b: u32) -> Option<u32> {
    Some(match op {
        0x00 => a.wrapping_add(b),
        0x10 => a.wrapping_sub(b),
        0x20 => a.wrapping_mul(b),
        0x30 => a.checked_div(b)?,
        0x40 => a | b,
        0x50 => a & b,
        0x60 => a.checked_shl(b).unwrap_or(0),
        0x70 => a.checked_shr(b).unwrap_or(0),
        0x90 => a.checked_rem(b)?,
        0xa0 => a ^ b,
        _ => return None,
    })
}

/// Kernel precedence: the action with the lowest signed value wins
/// (`ACTION_ONLY` in kernel/seccomp.c).
fn precedence(ret: u32) -> i32 {
    (ret & ACTION_MASK) as i32
}

fn allows(ret: u32) -> bool {
    matches!(ret & ACTION_MASK, RET_ALLOW | RET_LOG)
}

/// A short name for a return value, e.g. `errno(1)`, `kill_process`.
pub fn action_name(ret: u32) -> String {
    let data = ret & 0xffff;
    match ret & ACTION_MASK {
        RET_KILL_PROCESS => "kill_process".into(),
        RET_KILL_THREAD => "kill_thread".into(),
        RET_TRAP => "trap".into(),
        RET_ERRNO => format!("errno({data})"),
        RET_USER_NOTIF => "user_notif".into(),
        RET_TRACE => "trace".into(),
        RET_LOG => "log".into(),
        RET_ALLOW => "allow".into(),
        other => format!("unknown(0x{other:08x})"),
    }
}

/// The verdict of a filter chain for the native architecture.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Filters in the chain, newest first (indexes into `seccomp.img`).
    pub chain: Vec<u32>,
    /// Allowed whatever the arguments.
    pub allowed: BTreeSet<String>,
    /// Allowed for some argument values only.
    pub conditional: BTreeSet<String>,
    /// Never allowed, with the action that applies.
    pub denied: BTreeMap<String, String>,
    /// Syscall names whose outcome could not be determined.
    pub undetermined: BTreeSet<String>,
}

/// Follows `prev` links from `last` (the thread's `seccomp_filter` index).
pub fn chain(filters: &[Filter], last: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut cur = Some(last);
    while let Some(i) = cur {
        // A loop or a dangling index in a corrupt image ends the chain.
        if out.contains(&i) || filters.get(i as usize).is_none() {
            break;
        }
        out.push(i);
        cur = filters.get(i as usize).and_then(|f| f.prev);
    }
    out
}

/// Evaluates a chain for every x86_64 syscall number the `syscalls` crate
/// knows.
pub fn evaluate(filters: &[Filter], last: u32) -> Verdict {
    let chain_ids = chain(filters, last);
    let progs: Vec<&[Insn]> = chain_ids
        .iter()
        .filter_map(|&i| filters.get(i as usize).map(|f| f.insns.as_slice()))
        .collect();
    let mut verdict = Verdict {
        chain: chain_ids,
        ..Verdict::default()
    };
    for sysno in syscalls::x86_64::Sysno::iter() {
        let nr = sysno.id() as u32;
        let name = sysno.name().to_string();
        let mut all_allow = true;
        let mut some_allow_everywhere = true;
        let mut undetermined = false;
        let mut deny: Option<u32> = None;
        for prog in &progs {
            let o = run(prog, nr, AUDIT_ARCH_X86_64);
            undetermined |= o.undetermined;
            let any_allow = o.returns.iter().any(|&r| allows(r));
            let any_deny = o.returns.iter().any(|&r| !allows(r));
            if any_deny || o.undetermined {
                all_allow = false;
            }
            if !any_allow {
                some_allow_everywhere = false;
                if let Some(&worst) = o.returns.iter().min_by_key(|&&r| precedence(r)) {
                    deny = Some(match deny {
                        Some(d) if precedence(d) <= precedence(worst) => d,
                        _ => worst,
                    });
                }
            }
        }
        if all_allow && !undetermined {
            verdict.allowed.insert(name);
        } else if some_allow_everywhere {
            if undetermined {
                verdict.undetermined.insert(name.clone());
            }
            verdict.conditional.insert(name);
        } else if let Some(d) = deny {
            verdict.denied.insert(name, action_name(d));
        } else {
            verdict.undetermined.insert(name);
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// arch check; allow read(0); write(1) only when args[0] == 2;
    /// everything else errno(EPERM).
    fn prog() -> Vec<Insn> {
        vec![
            ins(0x20, 0, 0, 4),                 // ld arch
            ins(0x15, 1, 0, AUDIT_ARCH_X86_64), // jeq arch
            ins(0x06, 0, 0, RET_KILL_PROCESS),  // ret kill
            ins(0x20, 0, 0, 0),                 // ld nr
            ins(0x15, 0, 1, 0),                 // jeq read
            ins(0x06, 0, 0, RET_ALLOW),
            ins(0x15, 0, 3, 1),  // jeq write
            ins(0x20, 0, 0, 16), // ld args[0] low
            ins(0x15, 0, 1, 2),  // jeq 2
            ins(0x06, 0, 0, RET_ALLOW),
            ins(0x06, 0, 0, RET_ERRNO | 1),
        ]
    }

    #[test]
    fn evaluates_known_and_conditional_paths() {
        let p = prog();
        assert_eq!(
            run(&p, 0, AUDIT_ARCH_X86_64).returns,
            BTreeSet::from([RET_ALLOW])
        );
        assert_eq!(
            run(&p, 0, 0x4000_0003).returns,
            BTreeSet::from([RET_KILL_PROCESS])
        );
        assert_eq!(
            run(&p, 1, AUDIT_ARCH_X86_64).returns,
            BTreeSet::from([RET_ALLOW, RET_ERRNO | 1])
        );
        let f = vec![Filter {
            insns: p,
            prev: None,
        }];
        let v = evaluate(&f, 0);
        assert!(v.allowed.contains("read"));
        assert!(v.conditional.contains("write"));
        assert_eq!(v.denied.get("reboot").map(String::as_str), Some("errno(1)"));
    }

    #[test]
    fn stacked_filters_most_restrictive_wins() {
        let allow_all = vec![ins(0x06, 0, 0, RET_ALLOW)];
        let deny_read = vec![
            ins(0x20, 0, 0, 0),
            ins(0x15, 0, 1, 0),
            ins(0x06, 0, 0, RET_KILL_THREAD),
            ins(0x06, 0, 0, RET_ALLOW),
        ];
        let filters = vec![
            Filter {
                insns: allow_all,
                prev: None,
            },
            Filter {
                insns: deny_read,
                prev: Some(0),
            },
        ];
        let v = evaluate(&filters, 1);
        assert_eq!(v.chain, vec![1, 0]);
        assert_eq!(
            v.denied.get("read").map(String::as_str),
            Some("kill_thread")
        );
        assert!(v.allowed.contains("write"));
    }

    #[test]
    fn bad_programs_do_not_panic() {
        assert!(parse_filter("seccomp.img", 0, &[1, 2, 3]).is_err());
        // Jump past the end, ld of an odd offset, division by zero.
        let p = vec![ins(0x05, 0, 0, 100)];
        assert!(run(&p, 0, AUDIT_ARCH_X86_64).undetermined);
        let p = vec![ins(0x00, 0, 0, 0), ins(0x34, 0, 0, 0), ins(0x16, 0, 0, 0)];
        assert!(run(&p, 0, AUDIT_ARCH_X86_64).undetermined);
        let f = vec![Filter {
            insns: vec![],
            prev: Some(0),
        }];
        assert_eq!(chain(&f, 0), vec![0]);
    }
}
