//! Length-prefixed postcard frames.
//!
//! A frame is a little-endian `u32` body length followed by the postcard
//! encoding of one message. A reader refuses any length above its cap before
//! allocating, so a peer cannot make it reserve memory by lying.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The default cap on one frame's body.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    #[error("connection closed")]
    Closed,
    /// The length prefix exceeds the cap.
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    Oversized {
        /// Announced body length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The body is not a valid encoding of the expected message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The socket failed (including EOF in the middle of a frame).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Append one frame holding `msg` to `out`.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let taken = std::mem::take(out);
    let mut filled = postcard::to_extend(msg, taken).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = filled.len() - start - 4;
    if len > MAX_FRAME_BYTES {
        filled.truncate(start);
        *out = filled;
        return Err(FrameError::Oversized { len, max: MAX_FRAME_BYTES });
    }
    filled[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    *out = filled;
    Ok(())
}

/// Reads frames from a byte stream. It never reads past the end of a frame,
/// so it can be used unbuffered when the next bytes carry ancillary data; wrap
/// the stream in a `BufReader` for throughput.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader with the default cap.
    pub fn new(inner: R) -> Self {
        Self::with_cap(inner, MAX_FRAME_BYTES)
    }

    /// A reader refusing bodies longer than `max` bytes.
    pub fn with_cap(inner: R, max: usize) -> Self {
        FrameReader { inner, buf: Vec::new(), max }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Read the next frame's body (without decoding it).
    pub fn read_body(&mut self) -> Result<&[u8], FrameError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max {
            return Err(FrameError::Oversized { len, max: self.max });
        }
        self.buf.resize(len, 0);
        self.inner.read_exact(&mut self.buf)?;
        Ok(&self.buf)
    }

    /// Read and decode the next frame. Trailing bytes after the message are
    /// malformed.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        let body = self.read_body()?;
        let (msg, rest) = postcard::take_from_bytes(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(FrameError::Malformed(format!("{} trailing bytes", rest.len())));
        }
        Ok(msg)
    }
}

impl<R: Read> FrameReader<io::BufReader<R>> {
    /// Whether a whole frame is already buffered, so the next [`read`]
    /// returns without touching the socket. Lets a reader do a batch of
    /// buffered messages and act once (one lock, one write) before it blocks.
    ///
    /// [`read`]: FrameReader::read
    pub fn has_buffered_frame(&self) -> bool {
        let buffered = self.inner.buffer();
        match buffered.first_chunk::<4>() {
            Some(len) => buffered.len() - 4 >= u32::from_le_bytes(*len) as usize,
            None => false,
        }
    }
}

/// Frames from a socket read without blocking: bytes go in as they arrive
/// (possibly ending mid-frame) and whole frames come out.
///
/// This is the reading side when more than one thread may read a connection
/// (each under the connection's lock): one that sleeps until the socket is
/// readable, and others that look in while they spin for a result.
#[derive(Debug)]
pub struct FrameBuffer {
    /// Bytes read land in `buf[end..]`; `buf` only grows, so the space is
    /// zeroed once, not on every read.
    buf: Vec<u8>,
    /// Start of the first unread byte in `buf`.
    start: usize,
    /// End of the bytes read.
    end: usize,
    max: usize,
}

impl Default for FrameBuffer {
    fn default() -> Self {
        FrameBuffer { buf: Vec::new(), start: 0, end: 0, max: MAX_FRAME_BYTES }
    }
}

impl FrameBuffer {
    /// Bytes read at most per call of [`fill_from`](FrameBuffer::fill_from).
    const CHUNK: usize = 64 * 1024;

    /// Read what `fd` holds now, without blocking. `Ok(false)`: nothing was
    /// waiting. End of stream is [`FrameError::Closed`].
    pub fn fill_from(&mut self, fd: BorrowedFd<'_>) -> Result<bool, FrameError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > Self::CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + Self::CHUNK {
            self.buf.resize(self.end + Self::CHUNK, 0);
        }
        let got = loop {
            match recv(fd.as_raw_fd(), &mut self.buf[self.end..self.end + Self::CHUNK], MsgFlags::MSG_DONTWAIT) {
                Err(Errno::EINTR) => {}
                other => break other,
            }
        };
        match got {
            Ok(0) => Err(FrameError::Closed),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(io::Error::from(e).into()),
        }
    }

    /// Decode the next whole frame, if one has arrived. A length above the
    /// cap is refused before anything else is read.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Option<Result<T, FrameError>> {
        let pending = &self.buf[self.start..self.end];
        let len = u32::from_le_bytes(*pending.first_chunk::<4>()?) as usize;
        if len > self.max {
            return Some(Err(FrameError::Oversized { len, max: self.max }));
        }
        let body = pending.get(4..4 + len)?;
        self.start += 4 + len;
        Some(match postcard::take_from_bytes(body) {
            Ok((msg, [])) => Ok(msg),
            Ok((_, rest)) => Err(FrameError::Malformed(format!("{} trailing bytes", rest.len()))),
            Err(e) => Err(FrameError::Malformed(e.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_is_refused_before_allocating() {
        let mut bytes = (u32::MAX).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut r = FrameReader::with_cap(&bytes[..], 1024);
        assert!(matches!(r.read::<u32>(), Err(FrameError::Oversized { len, max: 1024 }) if len == u32::MAX as usize));
    }

    #[test]
    fn has_buffered_frame_sees_only_whole_frames() {
        let mut out = Vec::new();
        encode_frame(&7u64, &mut out).unwrap();
        encode_frame(&vec![9u8; 100], &mut out).unwrap();
        let whole = out.len();
        out.extend_from_slice(&[200, 0, 0, 0, 1]); // a frame cut short
        let mut r = FrameReader::new(io::BufReader::new(&out[..]));
        assert!(!r.has_buffered_frame(), "nothing is buffered before the first read");
        assert_eq!(r.read::<u64>().unwrap(), 7);
        assert!(r.has_buffered_frame());
        assert_eq!(r.read::<Vec<u8>>().unwrap(), vec![9u8; 100]);
        assert!(!r.has_buffered_frame(), "a partial frame is not whole");
        assert_eq!(out.len() - whole, 5);
    }

    #[test]
    fn frame_buffer_yields_whole_frames_as_bytes_arrive() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut frames = FrameBuffer::default();
        assert!(!frames.fill_from(rx.as_fd()).unwrap(), "nothing waiting: no block, no bytes");
        let mut out = Vec::new();
        encode_frame(&7u64, &mut out).unwrap();
        encode_frame(&String::from("shoal"), &mut out).unwrap();
        let cut = out.len() - 2;
        tx.write_all(&out[..cut]).unwrap();
        assert!(frames.fill_from(rx.as_fd()).unwrap());
        assert_eq!(frames.next_frame::<u64>().unwrap().unwrap(), 7);
        assert!(frames.next_frame::<String>().is_none(), "the second frame is cut short");
        tx.write_all(&out[cut..]).unwrap();
        assert!(frames.fill_from(rx.as_fd()).unwrap());
        assert_eq!(frames.next_frame::<String>().unwrap().unwrap(), "shoal");
        assert!(frames.next_frame::<u64>().is_none());
        tx.write_all(&u32::MAX.to_le_bytes()).unwrap();
        frames.fill_from(rx.as_fd()).unwrap();
        assert!(matches!(frames.next_frame::<u64>(), Some(Err(FrameError::Oversized { .. }))));
        drop(tx);
        let mut frames = FrameBuffer::default();
        assert!(matches!(frames.fill_from(rx.as_fd()), Err(FrameError::Closed)));
    }

    #[test]
    fn eof_at_boundary_is_closed_and_inside_is_io() {
        let mut out = Vec::new();
        encode_frame(&7u64, &mut out).unwrap();
        let mut r = FrameReader::new(&out[..]);
        assert_eq!(r.read::<u64>().unwrap(), 7);
        assert!(matches!(r.read::<u64>(), Err(FrameError::Closed)));
        let mut r = FrameReader::new(&out[..out.len() - 1]);
        assert!(matches!(r.read::<u64>(), Err(FrameError::Io(_))));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut out = Vec::new();
        encode_frame(&(1u8, 2u8), &mut out).unwrap();
        let mut r = FrameReader::new(&out[..]);
        assert!(matches!(r.read::<u8>(), Err(FrameError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn frames_round_trip(msgs in prop::collection::vec((any::<u64>(), ".*", prop::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut out = Vec::new();
            for m in &msgs {
                encode_frame(m, &mut out).unwrap();
            }
            let mut r = FrameReader::new(&out[..]);
            for m in &msgs {
                prop_assert_eq!(&r.read::<(u64, String, Vec<u8>)>().unwrap(), m);
            }
            prop_assert!(matches!(r.read::<u8>(), Err(FrameError::Closed)));
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut r = FrameReader::with_cap(&bytes[..], 4096);
            for _ in 0..4 {
                let _ = r.read::<(u64, String, Vec<u8>)>();
            }
        }
    }

    /// Cases per fuzz property: short by default (`cargo test` runs them in
    /// CI), `PROPTEST_CASES` for a longer run (see ARCHITECTURE.md).
    fn fuzz_config(default: u32) -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
        ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
    }

    type Msg = (u64, String, Vec<u8>);

    /// Hands out its bytes in pieces of the given sizes, as a socket may.
    struct Pieces<'a> {
        bytes: &'a [u8],
        sizes: Vec<usize>,
        next: usize,
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes.get(self.next).copied().unwrap_or(usize::MAX).max(1);
            self.next += 1;
            let n = size.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// What a reader makes of a byte stream: the messages before the first
    /// error, and that error (none: clean end at a frame boundary).
    fn read_all(mut read: impl FnMut() -> Option<Result<Msg, FrameError>>) -> (Vec<Msg>, Option<String>) {
        let mut msgs = Vec::new();
        loop {
            match read() {
                None => return (msgs, None),
                Some(Ok(m)) => msgs.push(m),
                Some(Err(e)) => return (msgs, Some(e.to_string())),
            }
        }
    }

    /// Feed `bytes` to a [`FrameBuffer`] through a socket in pieces; the
    /// messages and first error, as [`read_all`]. The buffer never holds
    /// more than what arrived plus one read's room.
    fn through_frame_buffer(bytes: &[u8], cuts: &[usize], max: usize) -> (Vec<Msg>, Option<String>) {
        use std::io::Write;
        use std::os::fd::AsFd;
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut frames = FrameBuffer { max, ..FrameBuffer::default() };
        let mut msgs = Vec::new();
        let mut sent = 0;
        let mut pieces = cuts.iter().map(|&c| c.max(1)).chain(std::iter::repeat(usize::MAX));
        loop {
            while let Some(frame) = frames.next_frame::<Msg>() {
                match frame {
                    Ok(m) => msgs.push(m),
                    Err(e) => return (msgs, Some(e.to_string())),
                }
            }
            assert!(frames.buf.len() <= sent + FrameBuffer::CHUNK, "buffer grew past what arrived");
            if sent == bytes.len() {
                drop(tx);
                return match frames.fill_from(rx.as_fd()) {
                    Err(FrameError::Closed) if frames.start == frames.end => (msgs, None),
                    Err(FrameError::Closed) => (msgs, Some("cut short".into())),
                    other => panic!("after the writer closed: {other:?}"),
                };
            }
            let n = pieces.next().unwrap().min(bytes.len() - sent);
            tx.write_all(&bytes[sent..sent + n]).unwrap();
            sent += n;
            // A piece may span two of the buffer's reads.
            while frames.fill_from(rx.as_fd()).unwrap() {}
        }
    }

    fn frames_then(msgs: &[Msg], tail: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            encode_frame(m, &mut out).unwrap();
        }
        out.extend_from_slice(tail);
        out
    }

    fn msgs() -> impl Strategy<Value = Vec<Msg>> {
        prop::collection::vec((any::<u64>(), ".{0,20}", prop::collection::vec(any::<u8>(), 0..200)), 0..8)
    }

    proptest! {
        #![proptest_config(fuzz_config(1024))]

        /// Valid frames, cut into pieces anywhere, come out whole and in
        /// order from both readers.
        #[test]
        fn fuzz_frames_split_across_reads_round_trip(msgs in msgs(), cuts in prop::collection::vec(1usize..300, 0..40)) {
            let bytes = frames_then(&msgs, &[]);
            let (got, error) = through_frame_buffer(&bytes, &cuts, MAX_FRAME_BYTES);
            prop_assert_eq!(&got, &msgs);
            prop_assert_eq!(error, None);
            let mut r = FrameReader::new(Pieces { bytes: &bytes, sizes: cuts, next: 0 });
            let (got, error) = read_all(|| match r.read::<Msg>() {
                Err(FrameError::Closed) => None,
                other => Some(other),
            });
            prop_assert_eq!(&got, &msgs);
            prop_assert_eq!(error, None);
        }

        /// Arbitrary bytes (alone, or after valid frames), cut anywhere:
        /// neither reader panics, both yield the same messages, and both
        /// fail exactly when the other does.
        #[test]
        fn fuzz_arbitrary_bytes_in_pieces(
            msgs in msgs(),
            tail in prop::collection::vec(any::<u8>(), 0..600),
            cuts in prop::collection::vec(1usize..300, 0..40),
        ) {
            let bytes = frames_then(&msgs, &tail);
            let (from_buffer, buffer_error) = through_frame_buffer(&bytes, &cuts, 4096);
            let mut r = FrameReader::with_cap(Pieces { bytes: &bytes, sizes: cuts, next: 0 }, 4096);
            let (from_reader, reader_error) = read_all(|| match r.read::<Msg>() {
                Err(FrameError::Closed) => None,
                other => Some(other),
            });
            prop_assert_eq!(&from_buffer[..msgs.len()], &msgs[..]);
            prop_assert_eq!(&from_buffer, &from_reader);
            prop_assert_eq!(buffer_error.is_some(), reader_error.is_some());
        }

        /// A length prefix over the cap is refused as soon as its four bytes
        /// are in, whatever follows, before any room for it is made.
        #[test]
        fn fuzz_lengths_over_the_cap_allocate_nothing(cap in 0usize..(1 << 20), over in 1u64..(1 << 32), body in prop::collection::vec(any::<u8>(), 0..64)) {
            let len = (cap as u64 + over).min(u64::from(u32::MAX));
            prop_assume!(len > cap as u64);
            let mut bytes = (len as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let mut r = FrameReader::with_cap(&bytes[..], cap);
            let refused = matches!(r.read::<Vec<u8>>(), Err(FrameError::Oversized { len: l, max }) if l as u64 == len && max == cap);
            prop_assert!(refused);
            prop_assert_eq!(r.buf.capacity(), 0);
            let mut frames = FrameBuffer { max: cap, ..FrameBuffer::default() };
            frames.buf = bytes.clone();
            frames.end = bytes.len();
            let refused = matches!(frames.next_frame::<Vec<u8>>(), Some(Err(FrameError::Oversized { .. })));
            prop_assert!(refused);
            prop_assert_eq!(frames.buf.capacity(), bytes.len());
        }
    }
}
