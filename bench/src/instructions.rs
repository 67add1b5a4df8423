//! `--instructions`: user-space instructions per operation, counted by cachegrind.
//!
//! Each chosen implementation's child (both ends in one process, on Tokio's current-thread
//! runtime; smux-futures on smol) runs under `valgrind --tool=cachegrind --cache-sim=no` at
//! two sizes, N and 3N operations; the difference of the two runs' instruction counts divided
//! by the 2N extra operations is the cost of one operation, without the start-up, the
//! connection's setup and the warm-up, which both runs share:
//!
//! - `pingpong`: one 64-byte round trip, each write flushed (10,000 and 30,000 round trips;
//!   the child runs `untimed`, without a clock read or a latency kept per round trip);
//! - `echo-seq`: one stream opened, 8 bytes echoed (flushed) and closed (5,000 and 15,000);
//! - `stream`: one MiB of a one-stream bulk transfer in 64 KiB writes, or `--write-size`'s
//!   (64 and 192 MiB).
//!
//! `--quick` takes a fifth of those sizes. Cachegrind counts user space only: the kernel's
//! work (raw TCP's connection per `echo-seq` operation, every syscall) is not in the figures.
//! Large copies (glibc's `memcpy` takes `rep movsb` for them) count about one instruction per
//! byte under valgrind, which counts each of its iterations: `stream`'s figure is mostly a
//! count of the bytes copied in user space, about 1,048,576 per copy of each MiB.
//!
//! The runs' out files go to `target/bench-instructions/` (`IMPL-WORKLOAD-N.cgout`), with
//! `cg_diff` of the two (`IMPL-WORKLOAD.diff.cgout`, the larger run minus the smaller: the
//! extra operations alone) and `cg_annotate` of that diff (`IMPL-WORKLOAD.annotate.txt`:
//! self instructions by function; cachegrind has no inclusive counts). The report prints the
//! top `--top K` (15) functions of each diff, per operation. Another view of a diff:
//! `cg_annotate target/bench-instructions/smux-tokio-v1-pingpong.diff.cgout | less`.
//!
//! Inclusive counts and call counts need callgrind, by hand, on one run (its figures then
//! include the setup and the 1,000 warm-up round trips: divide by N + 1000):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=target/bench-instructions/v1.callgrind \
//!     target/release/smux-bench --child smux-tokio-v1 pingpong iters=20000 untimed=1
//! callgrind_annotate --inclusive=yes target/bench-instructions/v1.callgrind | less
//! callgrind_annotate --tree=caller target/bench-instructions/v1.callgrind | less  # (Nx): calls
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::impls::Impl;
use crate::workloads::Workload;
use crate::{Kind, Options, Runtime, Subject};

/// The workloads this mode counts, in the order of the report.
pub const WORKLOADS: [Workload; 3] = [Workload::PingPong, Workload::EchoSeq, Workload::Stream];

/// The implementations counted when `--impls` does not say (with `--before`, its two as well).
const DEFAULT_IMPLS: [&str; 6] = [
    "raw-tcp",
    "smux-tokio-v1",
    "smux-tokio-v2",
    "before-v1",
    "before-v2",
    "async_smux",
];

/// How a workload is counted: its size parameter, the two sizes, what one operation is.
struct Sizes {
    key: &'static str,
    small: u64,
    large: u64,
    op: &'static str,
    what: String,
}

fn sizes(w: Workload, o: &Options) -> Sizes {
    let quick = o.quick;
    let (key, small, op, what) = match w {
        Workload::PingPong => (
            "iters",
            10_000,
            "round trip",
            "64-byte ping-pong, each write flushed".to_string(),
        ),
        Workload::EchoSeq => (
            "ops",
            5_000,
            "open + echo + close",
            "open, 8-byte echo (flushed), close, in sequence".to_string(),
        ),
        Workload::Stream => (
            "mib",
            64,
            "MiB",
            format!(
                "one stream's bulk transfer, {} writes",
                crate::size(o.params.write)
            ),
        ),
        _ => unreachable!("not counted"),
    };
    let small = if quick { (small / 5).max(1) } else { small };
    Sizes {
        key,
        small,
        large: 3 * small,
        op,
        what,
    }
}

/// A counted subject: its name and the program of its child.
struct Counted {
    subject: Subject,
    imp: Impl,
    exe: PathBuf,
}

/// The two runs of one subject on one workload: their instruction counts (`None`: failed).
struct Count {
    small: Option<u64>,
    large: Option<u64>,
}

impl Count {
    fn per_op(&self, s: &Sizes) -> Option<f64> {
        let (a, b) = (self.small?, self.large?);
        Some((b as f64 - a as f64) / (s.large - s.small) as f64)
    }
}

pub fn run(o: &Options) {
    let command = crate::command_line(o);
    eprintln!("{command}");
    if Command::new("valgrind").arg("--version").output().is_err() {
        crate::usage("--instructions needs valgrind (cachegrind) on the PATH");
    }
    let workloads: Vec<Workload> = if o.workloads_given {
        for w in &o.workloads {
            if !WORKLOADS.contains(w) {
                crate::usage(&format!(
                    "--instructions counts {} only, not {}",
                    WORKLOADS.map(Workload::name).join(", "),
                    w.name()
                ));
            }
        }
        o.workloads.clone()
    } else {
        WORKLOADS.to_vec()
    };
    let only: Vec<String> = match &o.only {
        Some(only) => only.clone(),
        None => DEFAULT_IMPLS.map(str::to_string).to_vec(),
    };
    let all = crate::Options {
        runtimes: vec![Runtime::Ct],
        go: false,
        only: Some(only),
        ..o.clone()
    };
    let subjects = crate::subjects(&all);
    let mut before_line = None;
    let before = match &o.before {
        Some(commit) if subjects.iter().any(|s| matches!(s.kind, Kind::Before(_))) => {
            match crate::build_before(commit) {
                Ok((exe, line)) => {
                    before_line = Some(line);
                    Some(exe)
                }
                Err(e) => {
                    eprintln!("note: the --before build failed, its rows left out: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let this = std::env::current_exe().expect("own path");
    let counted: Vec<Counted> = subjects
        .into_iter()
        .filter_map(|subject| match subject.kind {
            Kind::Rust(imp) => Some(Counted {
                subject,
                imp,
                exe: this.clone(),
            }),
            Kind::Before(imp) => Some(Counted {
                subject,
                imp,
                exe: before.clone()?,
            }),
            Kind::Go(_) | Kind::Tunnel | Kind::KcptunServer => None,
        })
        .collect();
    let dir = crate::target_dir().join("bench-instructions");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        crate::usage(&format!("{}: {e}", dir.display()));
    }
    let started = std::time::Instant::now();
    let mut counts: Vec<Vec<Count>> = Vec::new();
    for &w in &workloads {
        let sz = sizes(w, o);
        let mut row = Vec::new();
        for c in &counted {
            if let Some(why) = crate::not_applicable(c.subject, w) {
                eprintln!("{} {}: left out: {why}", c.subject.label(), w.name());
                row.push(Count {
                    small: None,
                    large: None,
                });
                continue;
            }
            let run = |n| count(o, c, w, &sz, n, &dir);
            let small = run(sz.small);
            let large = run(sz.large);
            if small.is_some() && large.is_some() {
                annotate(&dir, &stem(c, w), sz.small, sz.large);
            }
            row.push(Count { small, large });
        }
        counts.push(row);
    }
    // The report.
    println!("\n`{command}`\n");
    println!("- this tree: {}", crate::this_tree());
    if let Some(b) = &before_line {
        println!("- before: {b} (its smux-tokio and smux-futures, this tree's benchmark)");
    }
    println!("- {}", crate::cpu_model());
    println!(
        "- user-space instructions (cachegrind `Ir`, `--cache-sim=no`) of the whole child, both \
         ends in one process, Tokio current-thread (smux-futures: smol); per operation = (Ir at \
         3N - Ir at N) / 2N; the kernel's work is not counted; a large `memcpy` (`rep movsb`) \
         counts about one instruction per byte, so per MiB is mostly ~1,048,576 per user-space \
         copy"
    );
    println!(
        "- ratio = theirs / ours, > 1: fewer instructions than theirs; out files, diffs and \
         annotations in `{}`",
        dir.display()
    );
    for (wi, &w) in workloads.iter().enumerate() {
        let sz = sizes(w, o);
        println!(
            "\n#### instructions per {}: {} ({} and {} {})\n",
            sz.op, sz.what, sz.small, sz.large, sz.key
        );
        println!(
            "| implementation | Ir at {} | Ir at {} | per {} | vs raw TCP | vs async_smux |",
            sz.small, sz.large, sz.op
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let base = |i: Impl| {
            counted
                .iter()
                .position(|c| c.subject.kind == Kind::Rust(i))
                .and_then(|k| counts[wi][k].per_op(&sz))
        };
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
            _ => "–".to_string(),
        };
        for (k, c) in counted.iter().enumerate() {
            let n = &counts[wi][k];
            let cell = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
            let per = n.per_op(&sz);
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                c.subject.name(),
                cell(n.small),
                cell(n.large),
                per.map_or("–".to_string(), |p| format!("{p:.0}")),
                ratio(per, base(Impl::Raw)),
                ratio(per, base(Impl::AsyncSmux)),
            );
        }
    }
    if o.top > 0 {
        for (wi, &w) in workloads.iter().enumerate() {
            let sz = sizes(w, o);
            for (k, c) in counted.iter().enumerate() {
                if counts[wi][k].per_op(&sz).is_none() {
                    continue;
                }
                let path = dir.join(format!("{}.annotate.txt", stem(c, w)));
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                println!(
                    "\n##### {} {}: top {} functions, self instructions per {} \
                     (`cg_annotate {}`)\n",
                    c.subject.name(),
                    w.name(),
                    o.top,
                    sz.op,
                    dir.join(format!("{}.diff.cgout", stem(c, w))).display()
                );
                println!("| per {} | share | function |", sz.op);
                println!("|---:|---:|---|");
                for (ir, share, function) in top_functions(&text, o.top) {
                    println!(
                        "| {:.0} | {share} | `{}` |",
                        ir as f64 / (sz.large - sz.small) as f64,
                        function.replace('|', "\\|").replace('`', "'")
                    );
                }
            }
        }
    }
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
}

/// The file name stem of a subject's files for a workload.
fn stem(c: &Counted, w: Workload) -> String {
    format!("{}-{}", c.subject.name(), w.name())
}

/// Runs `c`'s child for `w` at size `n` under cachegrind; its instruction count.
fn count(o: &Options, c: &Counted, w: Workload, sz: &Sizes, n: u64, dir: &Path) -> Option<u64> {
    let out = dir.join(format!("{}-{n}.cgout", stem(c, w)));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=cachegrind", "--cache-sim=no"])
        .arg(format!("--cachegrind-out-file={}", out.display()))
        .arg(&c.exe)
        .args(["--child", c.imp.name(), w.name()])
        .arg(format!("{}={n}", sz.key));
    if w == Workload::PingPong {
        cmd.arg("untimed=1");
    }
    if w.sized_writes() {
        cmd.arg(format!("write={}", o.params.write));
    }
    let t = std::time::Instant::now();
    let label = format!("{} {} {}={n}", c.subject.name(), w.name(), sz.key);
    let Some(done) = crate::run_child(cmd, o.limit) else {
        eprintln!("{label}: no result in {:?}, killed", o.limit);
        return None;
    };
    let stdout = String::from_utf8_lossy(&done.stdout);
    if !done.status.success() || !stdout.lines().any(|l| l.starts_with("RESULT")) {
        eprintln!(
            "{label}: failed ({}): {}",
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        );
        return None;
    }
    let ir = std::fs::read_to_string(&out).ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("summary:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    });
    match ir {
        Some(ir) => eprintln!(
            "{label}: {ir} instructions ({:.1} s)",
            t.elapsed().as_secs_f64()
        ),
        None => eprintln!("{label}: no summary in {}", out.display()),
    }
    ir
}

/// `cg_diff` of the two runs (the larger minus the smaller) and `cg_annotate` of that, saved
/// beside the out files.
fn annotate(dir: &Path, stem: &str, small: u64, large: u64) {
    let diff = dir.join(format!("{stem}.diff.cgout"));
    let made = Command::new("cg_diff")
        .arg(dir.join(format!("{stem}-{small}.cgout")))
        .arg(dir.join(format!("{stem}-{large}.cgout")))
        .output();
    let written = match made {
        Ok(out) if out.status.success() => std::fs::write(&diff, out.stdout),
        Ok(out) => {
            eprintln!(
                "{stem}: cg_diff failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("{stem}: no cg_diff ({e})");
            return;
        }
    };
    if let Err(e) = written {
        eprintln!("{}: {e}", diff.display());
        return;
    }
    match Command::new("cg_annotate").arg(&diff).output() {
        Ok(out) if out.status.success() => {
            let path = dir.join(format!("{stem}.annotate.txt"));
            if let Err(e) = std::fs::write(&path, out.stdout) {
                eprintln!("{}: {e}", path.display());
            }
        }
        Ok(out) => eprintln!(
            "{stem}: cg_annotate failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("{stem}: no cg_annotate ({e})"),
    }
}

/// The first `k` rows of `cg_annotate`'s function table: instructions, share, function.
fn top_functions(annotation: &str, k: usize) -> Vec<(i64, String, String)> {
    let mut lines = annotation.lines();
    // The table follows its header line (`Ir  file:function`) and a rule.
    if !lines.any(|l| l.trim_start().starts_with("Ir") && l.trim_end().ends_with("file:function")) {
        return Vec::new();
    }
    lines
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (ir, rest) = l.trim_start().split_once(' ')?;
            let ir: i64 = ir.replace(',', "").parse().ok()?;
            let rest = rest.trim_start();
            let (share, function) = match rest.strip_prefix('(') {
                Some(r) => {
                    let (share, f) = r.split_once(')')?;
                    (share.trim().to_string(), f.trim().to_string())
                }
                None => (String::new(), rest.to_string()),
            };
            Some((ir, share, function))
        })
        .take(k)
        .collect()
}
