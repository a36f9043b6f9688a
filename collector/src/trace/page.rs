//! Ring-buffer sub-buffers ("pages") as `per_cpu/cpuN/trace_pipe_raw`
//! hands them out: a header (timestamp, commit) and compressed event
//! headers (type_len 5 bits, time_delta 27 bits), as `events/header_event`
//! describes. Everything is bounds-checked; a malformed page ends that page,
//! never the process.

use super::format::HeaderPage;

const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
const TYPE_TIME_STAMP: u32 = 31;
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;
const COMMIT_MASK: u64 = (1 << 30) - 1;
/// Absolute timestamps keep 59 bits; the top bits come from the page.
const TS_MSB: u64 = 0xf800_0000_0000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("page commit {commit} exceeds its {capacity} data bytes")]
    Commit { commit: usize, capacity: usize },
    #[error("event at page offset {offset} runs past the committed data")]
    Truncated { offset: usize },
}

/// One data event: its timestamp and its payload (common fields first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    pub ts: u64,
    pub payload: &'a [u8],
}

/// What a page held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageInfo {
    pub timestamp: u64,
    /// Bytes of committed event data.
    pub commit: usize,
    /// The kernel dropped events before this page.
    pub missed: bool,
    /// How many, when the kernel stored the count.
    pub missed_count: Option<u64>,
}

/// Reads the header of a page.
pub fn page_info(header: &HeaderPage, page: &[u8]) -> Result<PageInfo, PageError> {
    if page.len() < header.data_offset || header.commit_size > 8 || header.commit_offset + header.commit_size > page.len() {
        return Err(PageError::Short { len: page.len() });
    }
    let timestamp = read_u64(page, 0).ok_or(PageError::Short { len: page.len() })?;
    let raw_commit = read_uint(page, header.commit_offset, header.commit_size).ok_or(PageError::Short { len: page.len() })?;
    let commit = (raw_commit & COMMIT_MASK) as usize;
    let capacity = page.len() - header.data_offset;
    if commit > capacity {
        return Err(PageError::Commit { commit, capacity });
    }
    let missed = raw_commit & MISSED_EVENTS != 0;
    let missed_count = if raw_commit & MISSED_STORED != 0 {
        read_u64(page, header.data_offset + commit)
    } else {
        None
    };
    Ok(PageInfo { timestamp, commit, missed, missed_count })
}

/// Walks the data events of one page, calling `each` for every one. Returns
/// the page header; an error means the rest of the page was unreadable
/// (events before it were delivered).
pub fn for_each_event<'a>(
    header: &HeaderPage,
    page: &'a [u8],
    mut each: impl FnMut(RawEvent<'a>),
) -> Result<PageInfo, PageError> {
    let info = page_info(header, page)?;
    let start = header.data_offset;
    let end = start + info.commit;
    let mut ts = info.timestamp;
    let mut pos = start;
    while pos + 4 <= end {
        let word = read_u32(page, pos).ok_or(PageError::Truncated { offset: pos })?;
        let type_len = word & 0x1f;
        let delta = u64::from(word >> 5);
        match type_len {
            TYPE_PADDING => {
                if delta == 0 {
                    break; // the rest of the page is unused
                }
                let len = read_u32(page, pos + 4).ok_or(PageError::Truncated { offset: pos })? as usize;
                ts = ts.wrapping_add(delta);
                pos = advance(pos, 4 + len, end)?;
            }
            TYPE_TIME_EXTEND => {
                let hi = u64::from(read_u32(page, pos + 4).ok_or(PageError::Truncated { offset: pos })?);
                ts = ts.wrapping_add((hi << 27) | delta);
                pos = advance(pos, 8, end)?;
            }
            TYPE_TIME_STAMP => {
                let hi = u64::from(read_u32(page, pos + 4).ok_or(PageError::Truncated { offset: pos })?);
                ts = ((hi << 27) | delta) | (info.timestamp & TS_MSB);
                pos = advance(pos, 8, end)?;
            }
            0 => {
                // Length word (counting itself) follows the header.
                let len = read_u32(page, pos + 4).ok_or(PageError::Truncated { offset: pos })? as usize;
                if len < 4 {
                    return Err(PageError::Truncated { offset: pos });
                }
                let data = pos + 8;
                let next = advance(pos, 4 + len, end)?;
                ts = ts.wrapping_add(delta);
                each(RawEvent { ts, payload: &page[data..pos + 4 + len] });
                pos = next;
            }
            n => {
                let len = n as usize * 4;
                let next = advance(pos, 4 + len, end)?;
                ts = ts.wrapping_add(delta);
                each(RawEvent { ts, payload: &page[pos + 4..next] });
                pos = next;
            }
        }
    }
    Ok(info)
}

fn advance(pos: usize, by: usize, end: usize) -> Result<usize, PageError> {
    let next = pos.checked_add(by).ok_or(PageError::Truncated { offset: pos })?;
    if next > end {
        return Err(PageError::Truncated { offset: pos });
    }
    Ok(next)
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Little-endian unsigned integer of 1, 2, 4 or 8 bytes.
pub(crate) fn read_uint(b: &[u8], at: usize, size: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(size)?)?;
    match size {
        1 => Some(u64::from(s[0])),
        2 => Some(u64::from(u16::from_le_bytes([s[0], s[1]]))),
        4 => Some(u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))),
        8 => read_u64(b, at),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a page: header, then the given event words.
    fn page(ts: u64, commit_flags: u64, words: &[u32]) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[0..8].copy_from_slice(&ts.to_le_bytes());
        let commit = (words.len() * 4) as u64 | commit_flags;
        p[8..16].copy_from_slice(&commit.to_le_bytes());
        for (i, w) in words.iter().enumerate() {
            p[16 + i * 4..20 + i * 4].copy_from_slice(&w.to_le_bytes());
        }
        p
    }

    type Walked = (Vec<(u64, Vec<u8>)>, Result<PageInfo, PageError>);

    fn events(p: &[u8]) -> Walked {
        let mut out = Vec::new();
        let r = for_each_event(&HeaderPage::default(), p, |e| out.push((e.ts, e.payload.to_vec())));
        (out, r)
    }

    #[test]
    fn walks_small_large_extend_and_absolute_events() {
        let words = [
            (5 << 5) | 2, 0x0403_0201, 0x0807_0605,  // small: 8 bytes, delta 5
            (1 << 5) | 30, 2,                        // time extend: (2 << 27) | 1
            (3 << 5), 12, 0xaaaa_aaaa, 0xbbbb_bbbb,  // type_len 0: len 12 counts the length word
            (7 << 5) | 31, 1,                        // absolute: (1 << 27) | 7
            1, 0xcccc_cccc,                          // small, delta 0
            29,                                      // padding to the end
        ];
        let (evs, info) = events(&page(1000, 0, &words));
        let info = info.unwrap();
        assert!(!info.missed);
        assert_eq!(evs.len(), 3, "{evs:?}");
        assert_eq!(evs[0], (1005, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(evs[1].0, 1005 + ((2 << 27) | 1) + 3);
        assert_eq!(evs[1].1, vec![0xaa; 4].into_iter().chain(vec![0xbb; 4]).collect::<Vec<_>>());
        assert_eq!(evs[2], ((1 << 27) | 7, vec![0xcc; 4]));
    }

    #[test]
    fn reports_missed_events_and_stored_counts() {
        let mut p = page(0, MISSED_EVENTS | MISSED_STORED, &[(1 << 5) | 1, 0]);
        p[16 + 8..16 + 16].copy_from_slice(&42u64.to_le_bytes());
        let (evs, info) = events(&p);
        let info = info.unwrap();
        assert_eq!(evs.len(), 1);
        assert!(info.missed);
        assert_eq!(info.missed_count, Some(42));
    }

    #[test]
    fn malformed_pages_end_cleanly() {
        assert!(matches!(events(&[0u8; 10]).1, Err(PageError::Short { .. })));
        let mut p = page(0, 0, &[]);
        p[8..16].copy_from_slice(&5000u64.to_le_bytes());
        assert!(matches!(events(&p).1, Err(PageError::Commit { .. })));
        // A small event claiming 28 words in a 2-word commit.
        let (evs, r) = events(&page(0, 0, &[28, 0]));
        assert!(evs.is_empty());
        assert!(matches!(r, Err(PageError::Truncated { offset: 16 })));
        // type_len 0 with an absurd length.
        let (_, r) = events(&page(0, 0, &[0, u32::MAX, 0]));
        assert!(matches!(r, Err(PageError::Truncated { .. })));
        let (_, r) = events(&page(0, 0, &[0, 2, 0]));
        assert!(matches!(r, Err(PageError::Truncated { .. })));
    }
}
