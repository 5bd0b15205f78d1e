//! Runs every content detector and the injection signals over the 1 KiB
//! ticket of `benches/detect.rs` 20,000 times, for instruction counts (in
//! one fused pass; with the argument `separate`, as `scan` then `signals`):
//!
//! ```sh
//! cargo build --release -p castellan-judge --example profile_detect
//! valgrind --tool=callgrind target/release/examples/profile_detect
//! ```
use castellan_judge::detect::Detectors;

const TICKET: &str = include_str!("../benches/ticket.txt");

fn main() {
    let d = Detectors::shared();
    let (mut out, mut sigs) = (Vec::new(), Vec::new());
    let mut n = 0;
    let separate = std::env::args().any(|a| a == "separate");
    d.scan(TICKET, &mut out);
    let t = std::time::Instant::now();
    for _ in 0..20_000 {
        out.clear();
        sigs.clear();
        if separate {
            d.scan(std::hint::black_box(TICKET), &mut out);
            d.signals(std::hint::black_box(TICKET), &mut sigs);
        } else {
            d.scan_and_signals(std::hint::black_box(TICKET), &mut out, &mut sigs);
        }
        n += out.len() + sigs.len();
    }
    let per = t.elapsed() / 20_000;
    println!(
        "{n} findings, {per:?} per scan and signals of {} bytes",
        TICKET.len()
    );
}
