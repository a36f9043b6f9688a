//! Escaping of text that came from a container (comms, exe paths, file
//! names, annotations, checkpoint contents) before it reaches a terminal,
//! so a hostile name cannot retitle, clear or drive the admin's terminal.
//!
//! [`field`] escapes one value for a table cell: every control character,
//! newlines included (a name cannot forge a line), and the Unicode bidi
//! controls. [`Terminal`] is the safety net on all of `collector`'s
//! stdout: it escapes every control character but `\n` and `\t` as
//! `\u00XX`, which is also a valid escape inside a JSON string, so it can
//! sit under JSON output too (serde leaves DEL and C1 controls raw).
//! [`Escaping`] is for raw bytes (a file's contents) shown on a terminal.

use std::borrow::Cow;
use std::io::{self, Write};

/// Bidi embedding, override and isolate controls: they reorder what
/// follows them on screen.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` with control and bidi characters escaped (`\n`, `\t`, `\u{1b}`, …)
/// and backslashes doubled only when something was escaped; borrowed when
/// there is nothing to escape.
pub fn field(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || is_bidi(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() || is_bidi(c) || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that escapes control characters (C0 but `\n` and `\t`, DEL,
/// and the C1 range U+0080–U+009F in UTF-8) on their way to `inner`.
pub struct Terminal<W: Write> {
    inner: W,
    /// A 0xC2 lead byte seen at the end of the last write: whether it
    /// starts a C1 control depends on the next byte.
    pending_c2: bool,
}

impl<W: Write> Terminal<W> {
    pub fn new(inner: W) -> Self {
        Terminal { inner, pending_c2: false }
    }

    /// The unfiltered writer, for bytes the user asked for verbatim (a
    /// file's contents sent to a pipe).
    pub fn raw(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        if self.pending_c2 {
            self.pending_c2 = false;
            match buf.first() {
                Some(&b @ 0x80..=0x9f) => {
                    out.extend(format!("\\u00{b:02x}").as_bytes());
                    i = 1;
                }
                Some(_) => out.push(0xc2),
                None => {
                    self.pending_c2 = true;
                    return Ok(0);
                }
            }
        }
        while i < buf.len() {
            let b = buf[i];
            match b {
                b'\n' | b'\t' => out.push(b),
                0x00..=0x1f | 0x7f => out.extend(format!("\\u00{b:02x}").as_bytes()),
                0xc2 => match buf.get(i + 1) {
                    Some(&n @ 0x80..=0x9f) => {
                        out.extend(format!("\\u00{n:02x}").as_bytes());
                        i += 1;
                    }
                    Some(_) => out.push(b),
                    None => self.pending_c2 = true,
                },
                _ => out.push(b),
            }
            i += 1;
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending_c2 {
            self.pending_c2 = false;
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Terminal<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A writer that escapes control characters (all but `\n` and `\t`) and
/// invalid UTF-8, for file contents sent to a terminal: a hostile file must
/// not drive the terminal.
pub struct Escaping<W: Write> {
    inner: W,
}

impl<W: Write> Escaping<W> {
    pub fn new(inner: W) -> Self {
        Escaping { inner }
    }
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = String::with_capacity(buf.len());
        for &b in buf {
            match b {
                b'\n' | b'\t' => s.push(b as char),
                b'\\' => s.push_str("\\\\"),
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\x{b:02x}")),
            }
        }
        self.inner.write_all(s.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Standard output behind a [`Terminal`] filter: what every `collector`
/// command prints through.
pub fn stdout() -> Terminal<io::StdoutLock<'static>> {
    Terminal::new(io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\u{1b}]0;PWN\u{7}\u{1b}[2J";

    #[test]
    fn fields_escape_controls_newlines_and_bidi() {
        assert_eq!(field("/bin/sh"), "/bin/sh");
        assert!(matches!(field("/bin/sh"), Cow::Borrowed(_)));
        assert_eq!(field(HOSTILE), "\\u{1b}]0;PWN\\u{7}\\u{1b}[2J");
        assert_eq!(field("a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(field("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
    }

    #[test]
    fn the_terminal_filter_keeps_lines_and_escapes_the_rest() {
        let mut v = Vec::new();
        let mut t = Terminal::new(&mut v);
        write!(t, "comm {HOSTILE}\tok\n\u{7f}\u{9b}2J é").unwrap();
        drop(t);
        let s = String::from_utf8(v).unwrap();
        assert_eq!(s, "comm \\u001b]0;PWN\\u0007\\u001b[2J\tok\n\\u007f\\u009b2J é");
        assert!(!s.bytes().any(|b| b == 0x1b || b == 0x07));
    }

    #[test]
    fn a_c1_control_split_across_writes_is_still_escaped() {
        let mut v = Vec::new();
        let mut t = Terminal::new(&mut v);
        t.write_all(b"a\xc2").unwrap();
        t.write_all(b"\x9bb\xc2").unwrap();
        t.write_all(b"\xa0").unwrap();
        drop(t);
        assert_eq!(v, b"a\\u009bb\xc2\xa0");
    }

    #[test]
    fn json_through_the_filter_stays_json() {
        let value = serde_json::json!({ "comm": format!("{HOSTILE}\u{7f}\u{85}") });
        let mut v = Vec::new();
        serde_json::to_writer_pretty(Terminal::new(&mut v), &value).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(back, value);
        assert!(!v.iter().any(|&b| b == 0x1b || b == 0x7f));
    }
}
