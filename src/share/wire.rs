//! The 9P2000.L wire format, as far as the share server must read it before the `p9`
//! crate does: frame headers from a stream, and every T-message body, decoded with nom
//! into borrowed fields.
//!
//! Owns: reading one frame without allocating what its size field claims before that
//! size is checked; decoding a body strictly (every length inside the frame, nothing left
//! over); encoding the R-messages the server answers by itself (`Rlerror`).
//! Must not: decide anything; [`super::session`] holds the policy.
//!
//! Written by hand because the `p9` crate keeps its protocol types private and decodes
//! inside `handle_message`, after allocating what a frame's string and data lengths
//! claim; no other crate decodes 9P2000.L T-messages without also serving them.

use nom::bytes::complete::take;
use nom::multi::count;
use nom::number::complete::{le_u8, le_u16, le_u32, le_u64};
use nom::{IResult, Parser};
use std::io::{self, Read};

/// `size[4] type[1] tag[2]`.
pub const HEADER: usize = 7;
/// The most names one `Twalk` may carry (`MAXWELEM` in Linux and Plan 9).
pub const MAX_WALK_NAMES: usize = 16;

pub const RLERROR: u8 = 7;
pub const TVERSION: u8 = 100;
pub const RVERSION: u8 = 101;
pub const TWALK: u8 = 110;
pub const RWALK: u8 = 111;
pub const TWRITE: u8 = 118;

/// One T-message, its fields borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Version { msize: u32, version: &'a [u8] },
    Auth { afid: u32 },
    Attach { fid: u32, afid: u32, aname: &'a [u8] },
    Flush { oldtag: u16 },
    Walk { fid: u32, newfid: u32, names: Vec<&'a [u8]> },
    Read { fid: u32, offset: u64, count: u32 },
    Write { fid: u32, offset: u64, data: &'a [u8] },
    Clunk { fid: u32 },
    Remove { fid: u32 },
    Statfs { fid: u32 },
    Lopen { fid: u32, flags: u32 },
    Lcreate { fid: u32, name: &'a [u8], flags: u32, mode: u32 },
    Symlink { fid: u32, name: &'a [u8], target: &'a [u8] },
    Mknod { dfid: u32, name: &'a [u8] },
    Rename { fid: u32, dfid: u32, name: &'a [u8] },
    Readlink { fid: u32 },
    Getattr { fid: u32 },
    Setattr { fid: u32, valid: u32, size: u64 },
    XattrWalk { fid: u32, newfid: u32, name: &'a [u8] },
    XattrCreate { fid: u32, name: &'a [u8], size: u64 },
    Readdir { fid: u32, offset: u64, count: u32 },
    Fsync { fid: u32 },
    Lock { fid: u32 },
    GetLock { fid: u32 },
    Link { dfid: u32, fid: u32, name: &'a [u8] },
    Mkdir { dfid: u32, name: &'a [u8] },
    RenameAt { olddir: u32, oldname: &'a [u8], newdir: u32, newname: &'a [u8] },
    UnlinkAt { dir: u32, name: &'a [u8], flags: u32 },
}

impl Request<'_> {
    /// The message's name, for events and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Version { .. } => "Tversion",
            Request::Auth { .. } => "Tauth",
            Request::Attach { .. } => "Tattach",
            Request::Flush { .. } => "Tflush",
            Request::Walk { .. } => "Twalk",
            Request::Read { .. } => "Tread",
            Request::Write { .. } => "Twrite",
            Request::Clunk { .. } => "Tclunk",
            Request::Remove { .. } => "Tremove",
            Request::Statfs { .. } => "Tstatfs",
            Request::Lopen { .. } => "Tlopen",
            Request::Lcreate { .. } => "Tlcreate",
            Request::Symlink { .. } => "Tsymlink",
            Request::Mknod { .. } => "Tmknod",
            Request::Rename { .. } => "Trename",
            Request::Readlink { .. } => "Treadlink",
            Request::Getattr { .. } => "Tgetattr",
            Request::Setattr { .. } => "Tsetattr",
            Request::XattrWalk { .. } => "Txattrwalk",
            Request::XattrCreate { .. } => "Txattrcreate",
            Request::Readdir { .. } => "Treaddir",
            Request::Fsync { .. } => "Tfsync",
            Request::Lock { .. } => "Tlock",
            Request::GetLock { .. } => "Tgetlock",
            Request::Link { .. } => "Tlink",
            Request::Mkdir { .. } => "Tmkdir",
            Request::RenameAt { .. } => "Trenameat",
            Request::UnlinkAt { .. } => "Tunlinkat",
        }
    }
}

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly between frames.
    #[error("connection closed")]
    Closed,
    #[error("frame size {size} outside {min}..={max}")]
    Size { size: u32, min: usize, max: u32 },
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
}

/// Why a body did not decode: the reply is an `Rlerror` for its tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("message type {0} is not 9P2000.L or not served")]
    UnknownType(u8),
    #[error("{0} body does not match its frame (a length past the end or bytes left over)")]
    Malformed(&'static str),
    #[error("{0} carries {1} names; at most 16")]
    TooManyNames(&'static str, usize),
}

/// Reads one whole frame into `buf` (header included): the size field is checked against
/// `max` before anything is allocated for the body.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, max: u32) -> Result<(), FrameError> {
    let mut size = [0u8; 4];
    match read_exact_or_eof(r, &mut size)? {
        0 => return Err(FrameError::Closed),
        4 => {}
        _ => {
            return Err(
                io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame header").into()
            );
        }
    }
    let n = u32::from_le_bytes(size);
    if (n as usize) < HEADER || n > max {
        return Err(FrameError::Size { size: n, min: HEADER, max });
    }
    buf.clear();
    buf.extend_from_slice(&size);
    buf.resize(n as usize, 0);
    r.read_exact(&mut buf[4..])?;
    Ok(())
}

/// Fills `buf`, or returns how much was read when the stream ended first.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A frame's type and tag (the frame is at least [`HEADER`] bytes, as [`read_frame`] makes it).
pub fn header(frame: &[u8]) -> (u8, u16) {
    (frame[4], u16::from_le_bytes([frame[5], frame[6]]))
}

/// Decodes a whole frame's body.
pub fn decode(frame: &[u8]) -> Result<Request<'_>, BodyError> {
    let (ty, _) = header(frame);
    let body = &frame[HEADER..];
    let name = type_name(ty).ok_or(BodyError::UnknownType(ty))?;
    if ty == TWALK {
        // The name count is checked before the names are decoded (no Vec sized by it).
        if let Some(n) = body.get(8..10).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            && n > MAX_WALK_NAMES
        {
            return Err(BodyError::TooManyNames(name, n));
        }
    }
    match body_of(ty, body) {
        Ok(([], req)) => Ok(req),
        _ => Err(BodyError::Malformed(name)),
    }
}

fn type_name(ty: u8) -> Option<&'static str> {
    Some(match ty {
        8 => "Tstatfs",
        12 => "Tlopen",
        14 => "Tlcreate",
        16 => "Tsymlink",
        18 => "Tmknod",
        20 => "Trename",
        22 => "Treadlink",
        24 => "Tgetattr",
        26 => "Tsetattr",
        30 => "Txattrwalk",
        32 => "Txattrcreate",
        40 => "Treaddir",
        50 => "Tfsync",
        52 => "Tlock",
        54 => "Tgetlock",
        70 => "Tlink",
        72 => "Tmkdir",
        74 => "Trenameat",
        76 => "Tunlinkat",
        100 => "Tversion",
        102 => "Tauth",
        104 => "Tattach",
        108 => "Tflush",
        110 => "Twalk",
        116 => "Tread",
        118 => "Twrite",
        120 => "Tclunk",
        122 => "Tremove",
        _ => return None,
    })
}

/// A 9P string: `len[2]` then the bytes.
fn string(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, n) = le_u16(i)?;
    take(n)(i)
}

fn body_of(ty: u8, i: &[u8]) -> IResult<&[u8], Request<'_>> {
    Ok(match ty {
        8 => {
            let (i, fid) = le_u32(i)?;
            (i, Request::Statfs { fid })
        }
        12 => {
            let (i, (fid, flags)) = (le_u32, le_u32).parse(i)?;
            (i, Request::Lopen { fid, flags })
        }
        14 => {
            let (i, (fid, name, flags, mode, _gid)) = (le_u32, string, le_u32, le_u32, le_u32).parse(i)?;
            (i, Request::Lcreate { fid, name, flags, mode })
        }
        16 => {
            let (i, (fid, name, target, _gid)) = (le_u32, string, string, le_u32).parse(i)?;
            (i, Request::Symlink { fid, name, target })
        }
        18 => {
            let (i, (dfid, name, _mode, _major, _minor, _gid)) =
                (le_u32, string, le_u32, le_u32, le_u32, le_u32).parse(i)?;
            (i, Request::Mknod { dfid, name })
        }
        20 => {
            let (i, (fid, dfid, name)) = (le_u32, le_u32, string).parse(i)?;
            (i, Request::Rename { fid, dfid, name })
        }
        22 => {
            let (i, fid) = le_u32(i)?;
            (i, Request::Readlink { fid })
        }
        24 => {
            let (i, (fid, _mask)) = (le_u32, le_u64).parse(i)?;
            (i, Request::Getattr { fid })
        }
        26 => {
            // fid valid mode uid gid size atime_sec atime_nsec mtime_sec mtime_nsec
            let (i, (fid, valid, _mode, _uid, _gid, size)) =
                (le_u32, le_u32, le_u32, le_u32, le_u32, le_u64).parse(i)?;
            let (i, _times) = take(32usize)(i)?;
            (i, Request::Setattr { fid, valid, size })
        }
        30 => {
            let (i, (fid, newfid, name)) = (le_u32, le_u32, string).parse(i)?;
            (i, Request::XattrWalk { fid, newfid, name })
        }
        32 => {
            let (i, (fid, name, size, _flags)) = (le_u32, string, le_u64, le_u32).parse(i)?;
            (i, Request::XattrCreate { fid, name, size })
        }
        40 => {
            let (i, (fid, offset, count)) = (le_u32, le_u64, le_u32).parse(i)?;
            (i, Request::Readdir { fid, offset, count })
        }
        50 => {
            let (i, (fid, _datasync)) = (le_u32, le_u32).parse(i)?;
            (i, Request::Fsync { fid })
        }
        52 => {
            // fid type flags start length proc_id client_id
            let (i, (fid, _ty, _flags, _start, _len, _pid, _client)) =
                (le_u32, le_u8, le_u32, le_u64, le_u64, le_u32, string).parse(i)?;
            (i, Request::Lock { fid })
        }
        54 => {
            let (i, (fid, _ty, _start, _len, _pid, _client)) =
                (le_u32, le_u8, le_u64, le_u64, le_u32, string).parse(i)?;
            (i, Request::GetLock { fid })
        }
        70 => {
            let (i, (dfid, fid, name)) = (le_u32, le_u32, string).parse(i)?;
            (i, Request::Link { dfid, fid, name })
        }
        72 => {
            let (i, (dfid, name, _mode, _gid)) = (le_u32, string, le_u32, le_u32).parse(i)?;
            (i, Request::Mkdir { dfid, name })
        }
        74 => {
            let (i, (olddir, oldname, newdir, newname)) = (le_u32, string, le_u32, string).parse(i)?;
            (i, Request::RenameAt { olddir, oldname, newdir, newname })
        }
        76 => {
            let (i, (dir, name, flags)) = (le_u32, string, le_u32).parse(i)?;
            (i, Request::UnlinkAt { dir, name, flags })
        }
        100 => {
            let (i, (msize, version)) = (le_u32, string).parse(i)?;
            (i, Request::Version { msize, version })
        }
        102 => {
            let (i, (afid, _uname, _aname, _n_uname)) = (le_u32, string, string, le_u32).parse(i)?;
            (i, Request::Auth { afid })
        }
        104 => {
            let (i, (fid, afid, _uname, aname, _n_uname)) =
                (le_u32, le_u32, string, string, le_u32).parse(i)?;
            (i, Request::Attach { fid, afid, aname })
        }
        108 => {
            let (i, oldtag) = le_u16(i)?;
            (i, Request::Flush { oldtag })
        }
        110 => {
            let (i, (fid, newfid, n)) = (le_u32, le_u32, le_u16).parse(i)?;
            // `decode` refused more than MAX_WALK_NAMES before this point.
            let (i, names) = count(string, n as usize).parse(i)?;
            (i, Request::Walk { fid, newfid, names })
        }
        116 => {
            let (i, (fid, offset, count)) = (le_u32, le_u64, le_u32).parse(i)?;
            (i, Request::Read { fid, offset, count })
        }
        118 => {
            let (i, (fid, offset, n)) = (le_u32, le_u64, le_u32).parse(i)?;
            let (i, data) = take(n)(i)?;
            (i, Request::Write { fid, offset, data })
        }
        120 => {
            let (i, fid) = le_u32(i)?;
            (i, Request::Clunk { fid })
        }
        122 => {
            let (i, fid) = le_u32(i)?;
            (i, Request::Remove { fid })
        }
        _ => return Err(nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Tag))),
    })
}

/// `Rlerror` for `tag`: `size[4] 7 tag[2] ecode[4]`.
pub fn rlerror(tag: u16, errno: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    out.extend_from_slice(&11u32.to_le_bytes());
    out.push(RLERROR);
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(errno as u32).to_le_bytes());
    out
}

/// A `Twrite` frame carrying only the first `keep` bytes of `data` (for the quota).
pub fn shorten_write(frame: &[u8], keep: usize) -> Vec<u8> {
    // size[4] type[1] tag[2] fid[4] offset[8] count[4] data[count]
    const DATA: usize = HEADER + 16;
    let mut out = frame[..DATA + keep].to_vec();
    out[..4].copy_from_slice(&((DATA + keep) as u32).to_le_bytes());
    out[DATA - 4..DATA].copy_from_slice(&(keep as u32).to_le_bytes());
    out
}

/// A reply's type, and for `Rwalk` how many qids it carries; for `Rlerror` the errno.
pub fn reply_summary(reply: &[u8]) -> (u8, u32) {
    if reply.len() < HEADER {
        return (0, 0);
    }
    let ty = reply[4];
    let extra = match ty {
        RWALK if reply.len() >= HEADER + 2 => u16::from_le_bytes([reply[7], reply[8]]) as u32,
        RLERROR if reply.len() >= HEADER + 4 => u32::from_le_bytes([reply[7], reply[8], reply[9], reply[10]]),
        RVERSION if reply.len() >= HEADER + 4 => {
            u32::from_le_bytes([reply[7], reply[8], reply[9], reply[10]])
        }
        _ => 0,
    };
    (ty, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, tag: u16, body: &[u8]) -> Vec<u8> {
        let mut f = ((HEADER + body.len()) as u32).to_le_bytes().to_vec();
        f.push(ty);
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(body);
        f
    }

    fn s(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn walk_names_are_borrowed_and_counted() {
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend(2u32.to_le_bytes());
        body.extend(2u16.to_le_bytes());
        body.extend(s(b".."));
        body.extend(s(b"etc"));
        let f = frame(TWALK, 9, &body);
        assert_eq!(header(&f), (TWALK, 9));
        assert_eq!(
            decode(&f),
            Ok(Request::Walk { fid: 1, newfid: 2, names: vec![b"..".as_slice(), b"etc"] })
        );
    }

    #[test]
    fn lengths_past_the_frame_and_leftovers_are_malformed() {
        // A string claiming 60000 bytes in a 12-byte body.
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend(60000u16.to_le_bytes());
        body.extend(b"abcdef");
        assert_eq!(decode(&frame(72, 1, &body)), Err(BodyError::Malformed("Tmkdir")));
        // A Twrite claiming 4 GiB of data.
        let mut w = 1u32.to_le_bytes().to_vec();
        w.extend(0u64.to_le_bytes());
        w.extend(u32::MAX.to_le_bytes());
        w.extend(b"x");
        assert_eq!(decode(&frame(TWRITE, 1, &w)), Err(BodyError::Malformed("Twrite")));
        // A Tclunk with bytes after its fid.
        assert_eq!(decode(&frame(120, 1, &[1, 0, 0, 0, 9])), Err(BodyError::Malformed("Tclunk")));
        // Types that are not T-messages of 9P2000.L.
        assert_eq!(decode(&frame(112, 1, &[])), Err(BodyError::UnknownType(112)));
        assert_eq!(decode(&frame(RLERROR, 1, &[])), Err(BodyError::UnknownType(RLERROR)));
    }

    #[test]
    fn a_walk_of_more_than_16_names_is_refused_before_decoding() {
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend(2u32.to_le_bytes());
        body.extend(65535u16.to_le_bytes());
        assert_eq!(decode(&frame(TWALK, 1, &body)), Err(BodyError::TooManyNames("Twalk", 65535)));
    }

    #[test]
    fn frames_are_size_checked_before_allocation() {
        let mut buf = Vec::new();
        let huge = [0xff, 0xff, 0xff, 0x7f, 118, 0, 0];
        match read_frame(&mut &huge[..], &mut buf, 65560) {
            Err(FrameError::Size { size, .. }) => assert_eq!(size, 0x7fff_ffff),
            other => panic!("{other:?}"),
        }
        assert!(buf.capacity() < 1024);
        let tiny = [3, 0, 0, 0];
        assert!(matches!(read_frame(&mut &tiny[..], &mut buf, 65560), Err(FrameError::Size { size: 3, .. })));
        assert!(matches!(read_frame(&mut &[][..], &mut buf, 65560), Err(FrameError::Closed)));
        assert!(matches!(read_frame(&mut &[20, 0][..], &mut buf, 65560), Err(FrameError::Io(_))));
        let short = [20, 0, 0, 0, 120, 1, 0, 1];
        assert!(matches!(read_frame(&mut &short[..], &mut buf, 65560), Err(FrameError::Io(_))));
    }

    #[test]
    fn a_write_is_shortened_in_place() {
        let mut body = 7u32.to_le_bytes().to_vec();
        body.extend(100u64.to_le_bytes());
        body.extend(5u32.to_le_bytes());
        body.extend(b"hello");
        let f = frame(TWRITE, 3, &body);
        let short = shorten_write(&f, 2);
        assert_eq!(decode(&short), Ok(Request::Write { fid: 7, offset: 100, data: b"he" }));
        assert_eq!(header(&short), (TWRITE, 3));
        assert_eq!(rlerror(3, libc::EDQUOT), frame(RLERROR, 3, &(libc::EDQUOT as u32).to_le_bytes()));
    }
}
