//! Event layouts, read at run time from tracefs `events/*/format` text and
//! `events/header_page`, so the binary decoder follows whatever this kernel
//! records (field offsets differ across kernels: `sched_process_fork`'s
//! comms are `char[16]` on older ones and `__data_loc` strings on 6.x).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("format of {name}: no ID line")]
    NoId { name: String },
    #[error("format of {name}: bad field line {line:?}")]
    BadField { name: String, line: String },
    #[error("header_page: no {field} field")]
    HeaderPage { field: &'static str },
}

/// Where a field's bytes live inside the event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Inline bytes at `offset..offset+size`.
    Inline,
    /// `__data_loc`: a u32 at `offset` holding (len << 16 | absolute offset).
    DataLoc,
    /// `__rel_loc`: like DataLoc, offset relative to the end of this field.
    RelLoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    pub layout: Layout,
}

/// One event's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFormat {
    pub system: String,
    pub name: String,
    pub id: u16,
    pub fields: Vec<Field>,
}

impl EventFormat {
    /// Parses a `format` file. `system` comes from its directory.
    pub fn parse(system: &str, text: &str) -> Result<Self, FormatError> {
        let mut name = String::new();
        let mut id = None;
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(n) = line.strip_prefix("name:") {
                name = n.trim().to_string();
            } else if let Some(n) = line.strip_prefix("ID:") {
                id = n.trim().parse::<u16>().ok();
            } else if line.starts_with("field:") {
                let field = parse_field(line).ok_or_else(|| FormatError::BadField {
                    name: name.clone(),
                    line: line.chars().take(200).collect(),
                })?;
                fields.push(field);
            }
        }
        let id = id.ok_or_else(|| FormatError::NoId { name: name.clone() })?;
        Ok(EventFormat { system: system.to_string(), name, id, fields })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// `field:unsigned long args[6]; offset:16; size:48; signed:0;` (tab separated)
fn parse_field(line: &str) -> Option<Field> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':')?;
        match key.trim() {
            "field" => decl = Some(value.trim()),
            "offset" => offset = value.trim().parse().ok(),
            "size" => size = value.trim().parse().ok(),
            "signed" => signed = value.trim() == "1",
            _ => {}
        }
    }
    let decl = decl?;
    let layout = if decl.starts_with("__data_loc ") {
        Layout::DataLoc
    } else if decl.starts_with("__rel_loc ") {
        Layout::RelLoc
    } else {
        Layout::Inline
    };
    // The name is the last word, without any array suffix.
    let last = decl.split_whitespace().last()?;
    let name = last.split('[').next()?.trim_start_matches('*');
    if name.is_empty() {
        return None;
    }
    Some(Field { name: name.to_string(), offset: offset?, size: size?, signed, layout })
}

/// The sub-buffer header (`events/header_page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderPage {
    pub commit_offset: usize,
    pub commit_size: usize,
    pub data_offset: usize,
    /// Bytes of event data a sub-buffer can hold.
    pub data_size: usize,
}

impl HeaderPage {
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            if let Some(f) = parse_field(line.trim()) {
                fields.insert(f.name.clone(), f);
            }
        }
        let commit = fields.get("commit").ok_or(FormatError::HeaderPage { field: "commit" })?;
        let data = fields.get("data").ok_or(FormatError::HeaderPage { field: "data" })?;
        Ok(HeaderPage { commit_offset: commit.offset, commit_size: commit.size, data_offset: data.offset, data_size: data.size })
    }

    /// Size of one sub-buffer as read from `trace_pipe_raw`.
    pub fn page_size(&self) -> usize {
        self.data_offset + self.data_size
    }
}

impl Default for HeaderPage {
    /// The 64-bit layout with 4 KiB sub-buffers.
    fn default() -> Self {
        HeaderPage { commit_offset: 8, commit_size: 8, data_offset: 16, data_size: 4080 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_6_18: &str = "name: sched_process_fork\nID: 367\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n\n\
        print fmt: \"comm=%s pid=%d\", __get_str(parent_comm), REC->parent_pid\n";

    #[test]
    fn parses_event_formats() {
        let f = EventFormat::parse("sched", FORK_6_18).unwrap();
        assert_eq!((f.name.as_str(), f.id, f.fields.len()), ("sched_process_fork", 367, 6));
        let comm = f.field("child_comm").unwrap();
        assert_eq!((comm.offset, comm.size, comm.layout), (16, 4, Layout::DataLoc));
        assert!(f.field("child_pid").unwrap().signed);
        let args = parse_field("field:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;").unwrap();
        assert_eq!((args.name.as_str(), args.offset, args.size), ("args", 16, 48));
        let ptr = parse_field("field:const char * filename;\toffset:24;\tsize:8;\tsigned:0;").unwrap();
        assert_eq!(ptr.name, "filename");
    }

    #[test]
    fn rejects_broken_formats() {
        assert!(matches!(EventFormat::parse("x", "name: y\nformat:\n"), Err(FormatError::NoId { .. })));
        assert!(matches!(
            EventFormat::parse("x", "name: y\nID: 1\n\tfield:int a;\toffset:zz;\tsize:4;\n"),
            Err(FormatError::BadField { .. })
        ));
    }

    #[test]
    fn parses_header_page() {
        let text = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
                    \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
                    \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
                    \tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
        let h = HeaderPage::parse(text).unwrap();
        assert_eq!(h, HeaderPage::default());
        assert_eq!(h.page_size(), 4096);
        assert!(HeaderPage::parse("nothing").is_err());
    }
}
