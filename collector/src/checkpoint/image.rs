//! CRIU image framing, on byte slices: the magic header, then entries of a
//! little-endian u32 length followed by a protobuf message. Pure code: no
//! I/O, every length checked against both a fixed limit and the bytes left,
//! so a hostile length is an error that names the member, never an
//! allocation.

use super::error::{Error, Result};

/// `IMG_COMMON_MAGIC` (magic.h): first u32 of every image but inventory.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// `IMG_SERVICE_MAGIC`: first u32 of service files such as `stats-dump`.
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

pub const INVENTORY_MAGIC: u32 = 0x5831_3116;
pub const PSTREE_MAGIC: u32 = 0x5027_3030;
pub const FDINFO_MAGIC: u32 = 0x5621_3732;
pub const PAGEMAP_MAGIC: u32 = 0x5608_4025;
pub const CORE_MAGIC: u32 = 0x5505_3847;
pub const IDS_MAGIC: u32 = 0x5443_2030;
pub const UTSNS_MAGIC: u32 = 0x5447_3203;
pub const FS_MAGIC: u32 = 0x5140_3912;
pub const MM_MAGIC: u32 = 0x5749_2820;
pub const SECCOMP_MAGIC: u32 = 0x6441_3049;
pub const FILES_MAGIC: u32 = 0x5630_3138;
pub const STATS_MAGIC: u32 = 0x5709_3306;

/// Largest single protobuf entry we accept. CRIU's biggest entries (a
/// seccomp image with many filters, an mm with thousands of VMAs) are a few
/// MiB at most; a larger length is corruption or an attack.
pub const MAX_ENTRY: usize = 16 << 20;

/// Which header an image starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `inventory.img`: its own magic only.
    Inventory,
    /// Common magic followed by the image's magic.
    Common(u32),
    /// Service magic followed by the file's magic (`stats-dump`).
    Service(u32),
}

/// A cursor over one image's entries.
pub struct Image<'a> {
    member: &'a str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Image<'a> {
    /// Checks the header and positions the cursor on the first entry.
    pub fn open(member: &'a str, data: &'a [u8], header: Header) -> Result<Self> {
        let mut img = Image {
            member,
            data,
            pos: 0,
        };
        match header {
            Header::Inventory => img.expect_magic(INVENTORY_MAGIC)?,
            Header::Common(magic) => {
                img.expect_magic(IMG_COMMON_MAGIC)?;
                img.expect_magic(magic)?;
            }
            Header::Service(magic) => {
                img.expect_magic(IMG_SERVICE_MAGIC)?;
                img.expect_magic(magic)?;
            }
        }
        Ok(img)
    }

    fn read_u32(&mut self) -> Result<u32> {
        let available = self.data.len().saturating_sub(self.pos);
        let bytes = self
            .data
            .get(self.pos..self.pos.saturating_add(4))
            .ok_or_else(|| Error::Truncated {
                member: self.member.to_string(),
                offset: self.pos,
                needed: 4,
                available,
            })?;
        let mut word = [0u8; 4];
        word.copy_from_slice(bytes);
        self.pos += 4;
        Ok(u32::from_le_bytes(word))
    }

    fn expect_magic(&mut self, expected: u32) -> Result<()> {
        let found = self.read_u32()?;
        if found != expected {
            return Err(Error::BadMagic {
                member: self.member.to_string(),
                found,
                expected,
            });
        }
        Ok(())
    }

    /// The raw bytes of the next entry, or `None` at a clean end of image.
    pub fn next_raw(&mut self) -> Result<Option<(usize, &'a [u8])>> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let offset = self.pos;
        let len = self.read_u32()? as u64;
        let available = self.data.len() - self.pos;
        if len > MAX_ENTRY as u64 {
            return Err(Error::EntryTooLarge {
                member: self.member.to_string(),
                offset,
                len,
                limit: MAX_ENTRY,
            });
        }
        if len > available as u64 {
            return Err(Error::EntryPastEnd {
                member: self.member.to_string(),
                offset,
                len,
                available,
            });
        }
        let start = self.pos;
        let end = start + len as usize;
        self.pos = end;
        Ok(self.data.get(start..end).map(|raw| (offset, raw)))
    }

    /// Decodes the next entry as `M`.
    pub fn next_entry<M: prost::Message + Default>(&mut self) -> Result<Option<M>> {
        match self.next_raw()? {
            None => Ok(None),
            Some((offset, raw)) => M::decode(raw).map(Some).map_err(|source| Error::Decode {
                member: self.member.to_string(),
                offset,
                source,
            }),
        }
    }

    /// Decodes exactly the first entry; an image without one is an error.
    pub fn first<M: prost::Message + Default>(&mut self) -> Result<M> {
        self.next_entry()?.ok_or_else(|| Error::NoEntry {
            member: self.member.to_string(),
        })
    }

    /// Decodes every remaining entry.
    pub fn all<M: prost::Message + Default>(&mut self) -> Result<Vec<M>> {
        let mut out = Vec::new();
        while let Some(m) = self.next_entry()? {
            out.push(m);
        }
        Ok(out)
    }
}

/// Decodes a one-entry image.
pub fn decode_one<M: prost::Message + Default>(
    member: &str,
    data: &[u8],
    header: Header,
) -> Result<M> {
    Image::open(member, data, header)?.first()
}

/// Decodes an image of repeated entries.
pub fn decode_all<M: prost::Message + Default>(
    member: &str,
    data: &[u8],
    header: Header,
) -> Result<Vec<M>> {
    Image::open(member, data, header)?.all()
}

/// Frames messages the way CRIU writes them; used by tests and fuzzing to
/// build images (e.g. inet sockets, which CRIU 4.1.1 cannot dump here).
pub fn encode(header: Header, entries: &[&dyn EncodeEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    match header {
        Header::Inventory => out.extend_from_slice(&INVENTORY_MAGIC.to_le_bytes()),
        Header::Common(m) => {
            out.extend_from_slice(&IMG_COMMON_MAGIC.to_le_bytes());
            out.extend_from_slice(&m.to_le_bytes());
        }
        Header::Service(m) => {
            out.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
            out.extend_from_slice(&m.to_le_bytes());
        }
    }
    for entry in entries {
        let body = entry.encode_entry();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// Object-safe encoding, so `encode` can take mixed message types.
pub trait EncodeEntry {
    fn encode_entry(&self) -> Vec<u8>;
}

impl<M: prost::Message> EncodeEntry for M {
    fn encode_entry(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::proto::UtsnsEntry;

    fn uts() -> UtsnsEntry {
        UtsnsEntry {
            nodename: Some("h".into()),
            domainname: Some("(none)".into()),
        }
    }

    #[test]
    fn round_trip() {
        let data = encode(Header::Common(UTSNS_MAGIC), &[&uts()]);
        let got: UtsnsEntry =
            decode_one("utsns-1.img", &data, Header::Common(UTSNS_MAGIC)).unwrap();
        assert_eq!(got, uts());
    }

    #[test]
    fn wrong_magic_names_member() {
        let data = encode(Header::Common(FS_MAGIC), &[&uts()]);
        let err = decode_one::<UtsnsEntry>("utsns-1.img", &data, Header::Common(UTSNS_MAGIC))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("utsns-1.img") && msg.contains("wrong magic"),
            "{msg}"
        );
    }

    #[test]
    fn huge_length_is_rejected_without_allocating() {
        let mut data = encode(Header::Common(UTSNS_MAGIC), &[]);
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_one::<UtsnsEntry>("utsns-1.img", &data, Header::Common(UTSNS_MAGIC))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::EntryTooLarge {
                    len: 4294967295,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn length_past_end() {
        let mut data = encode(Header::Common(UTSNS_MAGIC), &[]);
        data.extend_from_slice(&100u32.to_le_bytes());
        data.extend_from_slice(&[0u8; 10]);
        let err =
            decode_one::<UtsnsEntry>("x.img", &data, Header::Common(UTSNS_MAGIC)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::EntryPastEnd {
                    len: 100,
                    available: 10,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn truncated_header_and_length() {
        let err = decode_one::<UtsnsEntry>("x.img", &[0x19, 0x43], Header::Common(UTSNS_MAGIC))
            .unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        let mut data = encode(Header::Common(UTSNS_MAGIC), &[]);
        data.extend_from_slice(&[1, 0]);
        let err =
            decode_one::<UtsnsEntry>("x.img", &data, Header::Common(UTSNS_MAGIC)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated {
                    needed: 4,
                    available: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
