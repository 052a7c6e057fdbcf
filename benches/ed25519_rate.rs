//! ed25519_rate: the raw ed25519 verification rate of this machine, the
//! yardstick for `agentplane verify` (scripts/bench/verify.sh).
//!
//! Signs 10,000 distinct messages of ~600 bytes (the size of an agentplane
//! chain entry's PAE) with one key (ed25519-dalek, the crate agentplane uses),
//! then, single-threaded:
//! - `VerifyingKey::verify_strict` one message at a time (what agentplane's
//!   per-entry fallback does; the "raw single-core rate" of the targets);
//! - `ed25519_dalek::verify_batch` over batches of 64 (what agentplane's
//!   fast path does, per thread).
//!
//! Each is repeated `--reps` times over all messages; the median pass is reported.
//! Also, for context, sha256 over the same messages (agentplane hashes every
//! chain line and every artifact file).
//!
//! Run (not part of `cargo test`; harness = false):
//!   cargo bench --bench ed25519_rate            [-- --reps 7 --n 10000 --size 600]
//! The last line of output is one JSON object (for scripts/bench/verify.sh).

// A benchmark program reports on stdout/stderr: that is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n = arg("--n", 10_000);
    let size = arg("--size", 600);
    let reps = arg("--reps", 7).max(1);

    // A fixed key: the rate does not depend on which key it is.
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let vk: VerifyingKey = sk.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut m = format!("DSSEv1 28 application/vnd.in-toto+json {size} {{\"seq\":{i},\"pad\":\"").into_bytes();
            m.resize(size, b'x');
            m
        })
        .collect();
    let sigs: Vec<Signature> = msgs.iter().map(|m| sk.sign(m)).collect();

    // verify_strict, one at a time.
    let mut strict = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for (m, s) in msgs.iter().zip(&sigs) {
            vk.verify_strict(m, s).expect("verify_strict");
        }
        strict.push(t.elapsed());
    }

    // verify_batch, 64 at a time.
    let keys = vec![vk; 64];
    let mut batch = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for (ms, ss) in msgs.chunks(64).zip(sigs.chunks(64)) {
            let refs: Vec<&[u8]> = ms.iter().map(Vec::as_slice).collect();
            ed25519_dalek::verify_batch(&refs, ss, &keys[..ms.len()]).expect("verify_batch");
        }
        batch.push(t.elapsed());
    }

    // sha256 over the same bytes, for context.
    let mut sha = Vec::new();
    let mut sink = 0u8;
    for _ in 0..reps {
        let t = Instant::now();
        for m in &msgs {
            sink ^= Sha256::digest(m)[0];
        }
        sha.push(t.elapsed());
    }
    std::hint::black_box(sink);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (s, b, h) = (median(strict.clone()), median(batch.clone()), median(sha));
    let mib = (n * size) as f64 / h.as_secs_f64() / (1024.0 * 1024.0);
    println!("ed25519_rate: {n} messages of {size} bytes, {reps} passes each, single thread, median pass");
    println!(
        "  verify_strict        {:>9.0} verifications/s  ({:.1} us each; best pass {:.0}/s)",
        rate(s),
        s.as_secs_f64() * 1e6 / n as f64,
        rate(*strict.iter().min().unwrap())
    );
    println!(
        "  verify_batch (64)    {:>9.0} verifications/s  ({:.1} us each; best pass {:.0}/s)",
        rate(b),
        b.as_secs_f64() * 1e6 / n as f64,
        rate(*batch.iter().min().unwrap())
    );
    println!("  sha256               {:>9.0} messages/s       ({mib:.0} MiB/s)", rate(h));
    println!(
        "{{\"n\":{n},\"size\":{size},\"reps\":{reps},\"verifyStrictPerSec\":{:.1},\"verifyBatch64PerSec\":{:.1},\"sha256MiBPerSec\":{mib:.1}}}",
        rate(s),
        rate(b)
    );
}
