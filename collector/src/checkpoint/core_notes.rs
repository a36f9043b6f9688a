//! The notes of an ELF core built from a checkpointed process: NT_PRSTATUS,
//! NT_PRFPREG and NT_X86_XSTATE per thread (main thread first), NT_PRPSINFO,
//! NT_SIGINFO, NT_AUXV and NT_FILE, laid out as the Linux kernel writes them
//! for x86_64. Pure: bytes from the decoded model.

use object::elf;

use super::memory::PAGE_SIZE;
use super::model::{Process, Registers, Vma};

/// `NT_FILE` ("FILE") and `NT_X86_XSTATE`.
const NT_FILE: u32 = 0x4649_4c45;
const NT_X86_XSTATE: u32 = 0x202;

fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    // The kernel names the x86 extended state "LINUX", the rest "CORE".
    let name: &[u8] = if kind == NT_X86_XSTATE { b"LINUX\0" } else { b"CORE\0" };
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

pub(crate) fn prstatus(p: &Process, tid: u32, regs: &[u64; 27], fpvalid: bool) -> Vec<u8> {
    let mut d = Vec::with_capacity(336);
    d.extend_from_slice(&[0u8; 12]); // pr_info: signo, code, errno
    d.extend_from_slice(&[0u8; 4]); // pr_cursig + padding
    d.extend_from_slice(&[0u8; 16]); // pr_sigpend, pr_sighold
    for v in [tid, p.ppid, p.pgid, p.sid] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d.extend_from_slice(&[0u8; 64]); // utime, stime, cutime, cstime
    for r in regs {
        d.extend_from_slice(&r.to_le_bytes());
    }
    d.extend_from_slice(&u32::from(fpvalid).to_le_bytes());
    d.extend_from_slice(&[0u8; 4]);
    d
}

pub(crate) fn prpsinfo(p: &Process) -> Vec<u8> {
    let mut d = Vec::with_capacity(136);
    let (state, sname) = match p.state.as_str() {
        "zombie" => (4u8, b'Z'),
        "stopped" => (3, b'T'),
        _ => (1, b'S'),
    };
    d.extend_from_slice(&[state, sname, u8::from(state == 4), 0]);
    d.extend_from_slice(&[0u8; 4]);
    d.extend_from_slice(&0u64.to_le_bytes()); // pr_flag
    d.extend_from_slice(&p.uid.unwrap_or(0).to_le_bytes());
    d.extend_from_slice(&p.gid.unwrap_or(0).to_le_bytes());
    for v in [p.pid, p.ppid, p.pgid, p.sid] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    let mut fname = [0u8; 16];
    let comm = p.comm.as_bytes();
    let n = comm.len().min(15);
    fname[..n].copy_from_slice(&comm[..n]);
    d.extend_from_slice(&fname);
    let mut args = [0u8; 80];
    let line = p
        .cmdline
        .as_ref()
        .map(|c| c.join(" "))
        .unwrap_or_else(|| p.comm.clone())
        // gdb prints this line as is: no control characters from the archive.
        .replace(|c: char| c.is_control(), " ");
    let n = line.len().min(79);
    args[..n].copy_from_slice(&line.as_bytes()[..n]);
    d.extend_from_slice(&args);
    d
}

/// The 512-byte fxsave image (`struct user_i387_struct`).
fn fxsave(fp: &super::proto::UserX86Fpregs) -> Vec<u8> {
    let mut d = vec![0u8; 512];
    let put = |d: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        if let Some(s) = d.get_mut(at..at + bytes.len()) {
            s.copy_from_slice(bytes);
        }
    };
    put(&mut d, 0, &(fp.cwd.unwrap_or(0) as u16).to_le_bytes());
    put(&mut d, 2, &(fp.swd.unwrap_or(0) as u16).to_le_bytes());
    put(&mut d, 4, &(fp.twd.unwrap_or(0) as u16).to_le_bytes());
    put(&mut d, 6, &(fp.fop.unwrap_or(0) as u16).to_le_bytes());
    put(&mut d, 8, &fp.rip.unwrap_or(0).to_le_bytes());
    put(&mut d, 16, &fp.rdp.unwrap_or(0).to_le_bytes());
    put(&mut d, 24, &fp.mxcsr.unwrap_or(0).to_le_bytes());
    put(&mut d, 28, &fp.mxcsr_mask.unwrap_or(0).to_le_bytes());
    for (i, w) in fp.st_space.iter().take(32).enumerate() {
        put(&mut d, 32 + 4 * i, &w.to_le_bytes());
    }
    for (i, w) in fp.xmm_space.iter().take(64).enumerate() {
        put(&mut d, 160 + 4 * i, &w.to_le_bytes());
    }
    d
}

/// The AVX xsave layout gdb recognises by its size (832 bytes): fxsave,
/// XCR0 in the software-reserved bytes, the header, then YMM_Hi128.
fn xstate(fp: &super::proto::UserX86Fpregs) -> Option<Vec<u8>> {
    let xs = fp.xsave.as_ref()?;
    if xs.ymmh_space.len() < 64 {
        return None;
    }
    let mut d = fxsave(fp);
    d.resize(832, 0);
    d[464..472].copy_from_slice(&0x7u64.to_le_bytes()); // XCR0: x87 | SSE | AVX
    d[512..520].copy_from_slice(&(xs.xstate_bv.unwrap_or(0) & 0x7).to_le_bytes());
    for (i, w) in xs.ymmh_space.iter().take(64).enumerate() {
        d[576 + 4 * i..580 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    Some(d)
}

pub(crate) fn notes(p: &Process) -> Vec<u8> {
    let mut out = Vec::new();
    let mut threads: Vec<_> = p.threads.iter().filter(|t| t.regs.is_some()).collect();
    threads.sort_by_key(|t| (t.tid != p.pid, t.tid));
    let fp_notes = |out: &mut Vec<u8>, r: &Registers| {
        if let Some(fp) = &r.fp {
            note(out, elf::NT_PRFPREG, &fxsave(fp));
            if let Some(x) = xstate(fp) {
                note(out, NT_X86_XSTATE, &x);
            }
        }
    };
    for (i, t) in threads.iter().enumerate() {
        let Some(r) = t.regs.as_deref() else { continue };
        note(&mut out, elf::NT_PRSTATUS, &prstatus(p, t.tid, &r.user, r.fp.is_some()));
        if i == 0 {
            note(&mut out, elf::NT_PRPSINFO, &prpsinfo(p));
            note(&mut out, elf::NT_SIGINFO, &[0u8; 128]);
            if let Some(m) = &p.memory {
                let auxv: Vec<u8> = m.auxv.iter().flat_map(|w| w.to_le_bytes()).collect();
                if !auxv.is_empty() {
                    note(&mut out, elf::NT_AUXV, &auxv);
                }
                note(&mut out, NT_FILE, &nt_file(&m.vmas));
            }
        }
        fp_notes(&mut out, r);
    }
    out
}

fn nt_file(vmas: &[Vma]) -> Vec<u8> {
    let files: Vec<(&Vma, &String)> = vmas
        .iter()
        .filter(|v| v.kind() == "file" && !v.is_empty())
        .filter_map(|v| v.file.as_ref().map(|f| (v, f)))
        .collect();
    let mut d = Vec::new();
    d.extend_from_slice(&(files.len() as u64).to_le_bytes());
    d.extend_from_slice(&PAGE_SIZE.to_le_bytes());
    for (v, _) in &files {
        d.extend_from_slice(&v.start.to_le_bytes());
        d.extend_from_slice(&v.end.to_le_bytes());
        d.extend_from_slice(&(v.pgoff / PAGE_SIZE).to_le_bytes());
    }
    for (_, f) in &files {
        d.extend_from_slice(f.as_bytes());
        d.push(0);
    }
    d
}
