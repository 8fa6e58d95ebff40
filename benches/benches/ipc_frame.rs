//! Frames: `shoal_ipc::encode_frame` into a reused buffer, and
//! `FrameReader::read` decoding from an in-memory stream, for a task message
//! with no arguments (tens of bytes) and one carrying a 4 KiB inline argument.
//!
//! The messages mirror the engine's `Execute` (its protocol types are private
//! to the engine), so postcard does the same work per field as on a real
//! connection.

use std::hint::black_box;
use std::io::{self, Read};

use criterion::{Criterion, Throughput};
use serde::{Deserialize, Serialize};
use shoal_ipc::{FrameReader, encode_frame};

/// One argument of a task (the shape of the engine's `ArgData`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ArgData {
    Inline {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        fingerprint: u64,
    },
    Arena {
        id: u64,
        offset: u64,
        len: u64,
        fingerprint: u64,
    },
}

/// A task to run (the shape of the engine's `Execute`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Execute {
    task: u64,
    function: String,
    args: Vec<ArgData>,
}

/// An endless stream that replays `frame` over and over, so one
/// `FrameReader` (and its body buffer) serves every iteration, as on a
/// long-lived connection.
struct Replay<'a> {
    frame: &'a [u8],
    at: usize,
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.frame[self.at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at = (self.at + n) % self.frame.len();
        Ok(n)
    }
}

fn messages() -> [(&'static str, Execute); 2] {
    let small = Execute { task: 123_456, function: "engine_submit::noop".into(), args: vec![] };
    let four_kib = Execute {
        task: 123_457,
        function: "my_crate::stage::transform".into(),
        args: vec![
            ArgData::Inline { bytes: (0..4096u32).map(|i| (i * 31 % 251) as u8).collect(), fingerprint: 0xF00D },
            ArgData::Arena { id: 77, offset: 1 << 20, len: 8 << 20, fingerprint: 0xBEEF },
        ],
    };
    [("small", small), ("4KiB", four_kib)]
}

fn frames(c: &mut Criterion) {
    for (name, msg) in messages() {
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame).expect("encode");
        let mut group = c.benchmark_group("ipc_frame");
        group.throughput(Throughput::Bytes(frame.len() as u64));

        let mut out = Vec::with_capacity(frame.len());
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(black_box(&msg), &mut out).expect("encode");
                black_box(out.len())
            })
        });

        let mut reader = FrameReader::new(Replay { frame: &frame, at: 0 });
        assert_eq!(reader.read::<Execute>().expect("decode"), msg);
        group.bench_function(format!("decode/{name}"), |b| b.iter(|| reader.read::<Execute>().expect("decode")));
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    frames(&mut c);
    c.final_summary();
}
