//! The memory planner: the CSV reader and its errors, the independent checker against
//! hand-broken plans, greedy and the search on every MiniMalloc benchmark, random problems
//! against greedy and against a brute-force optimum, and `flint plan` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flint_compiler::plan::{self, check, csv, greedy, Buffer, Plan, PlanError, PlanOptions, Strategy as Method};
use proptest::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The MiniMalloc benchmarks, copied into `bench/minimalloc/`.
fn benchmarks() -> Vec<PathBuf> {
    let dir = repo().join("bench/minimalloc");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
}

fn buffer(id: &str, lower: u64, upper: u64, size: u64) -> Buffer {
    Buffer { id: id.to_string(), lower, upper, size }
}

/// Search options for debug-build tests: a short budget, so the test stays quick.
fn quick(ms: u64) -> PlanOptions {
    PlanOptions { alignment: 1, time_limit: Duration::from_millis(ms), strategy: Method::Search }
}

// ----- CSV -----

#[test]
fn csv_reads_the_example_with_string_ids() {
    let text = "id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\n\n b3 , 0 , 9 , 4 \r\n";
    let buffers = csv::parse(text).expect("parses");
    assert_eq!(buffers, vec![buffer("b1", 0, 3, 4), buffer("b2", 3, 9, 4), buffer("b3", 0, 9, 4)]);
}

fn csv_error(text: &str) -> String {
    csv::parse(text).expect_err("should be refused").to_string()
}

#[test]
fn csv_errors_name_the_line() {
    assert_eq!(csv_error(""), "the file is empty; expected the header `id,lower,upper,size`");
    assert_eq!(
        csv_error("id,start,end,size\n"),
        "line 1: expected the header `id,lower,upper,size`, found `id,start,end,size`"
    );
    assert_eq!(
        csv_error("id,lower,upper,size\na,0,1,2\nb,0,1\n"),
        "line 3: expected 4 fields `id,lower,upper,size`, found 3"
    );
    assert_eq!(csv_error("id,lower,upper,size\na,0,x,2\n"), "line 2: upper `x` is not a non-negative integer");
    assert_eq!(csv_error("id,lower,upper,size\na,0,1,-2\n"), "line 2: size `-2` is not a non-negative integer");
    assert_eq!(csv_error("id,lower,upper,size\na,5,1,2\n"), "line 2: the lifetime [5, 1) ends before it starts");
    assert_eq!(csv_error("id,lower,upper,size\na,0,1,2\n\na,1,2,3\n"), "line 4: duplicate id `a` (first on line 2)");
    assert_eq!(csv_error("id,lower,upper,size\n,0,1,2\n"), "line 2: the id is empty");
    let huge = format!("id,lower,upper,size\na,0,1,{0}\nb,0,1,{0}\n", u64::MAX / 2);
    assert_eq!(csv_error(&huge), "line 2: the sizes add up to more than 2^62 bytes");
}

#[test]
fn capacity_comes_from_the_file_name() {
    assert_eq!(csv::capacity_from_path(Path::new("x/A.1048576.csv")), Some(1048576));
    assert_eq!(csv::capacity_from_path(Path::new("input.12.csv")), Some(12));
    assert_eq!(csv::capacity_from_path(Path::new("plain.csv")), None);
}

#[test]
fn reading_a_missing_file_is_an_error() {
    let err = csv::read(Path::new("no/such/file.csv")).expect_err("missing");
    assert!(matches!(err, PlanError::Io { .. }), "{err}");
}

// ----- The checker -----

fn example() -> Vec<Buffer> {
    csv::read(&benchmark("input.12.csv")).expect("the example reads")
}

fn benchmark(name: &str) -> PathBuf {
    repo().join("bench/minimalloc").join(name)
}

#[test]
fn checker_accepts_minimallocs_published_solution() {
    // The solution in MiniMalloc's README for input.12.csv.
    let plan = Plan::new(&example(), vec![8, 8, 4, 4, 0]);
    assert_eq!(plan.arena, 12);
    check::check(&example(), &plan, 1).expect("valid");
    check::check(&example(), &plan, 4).expect("valid with alignment 4");
}

#[test]
fn checker_catches_hand_broken_plans() {
    let buffers = example();
    let overlap = Plan::new(&buffers, vec![8, 8, 6, 4, 0]); // b3 [6,10) meets b1 [8,12)
    assert!(
        matches!(check::check(&buffers, &overlap, 1), Err(PlanError::Overlap { ref a, ref b, from: 8, to: 10 }) if a.as_str() == "b1" && b.as_str() == "b3" || a.as_str() == "b3" && b.as_str() == "b1"),
        "{:?}",
        check::check(&buffers, &overlap, 1)
    );
    let outside = Plan { offsets: vec![8, 8, 4, 4, 0], arena: 11 };
    assert!(matches!(check::check(&buffers, &outside, 1), Err(PlanError::OutsideArena { end: 12, arena: 11, .. })));
    let short = Plan { offsets: vec![8, 8, 4, 4], arena: 12 };
    assert!(matches!(check::check(&buffers, &short, 1), Err(PlanError::WrongLength { offsets: 4, buffers: 5 })));
    let misaligned = Plan::new(&buffers, vec![8, 8, 4, 4, 0]);
    assert!(matches!(
        check::check(&buffers, &misaligned, 8),
        Err(PlanError::Misaligned { offset: 4, alignment: 8, .. })
    ));
    // Touching lifetimes ([0,3) and [3,9)) may share bytes; so may empty buffers.
    let touching = vec![buffer("a", 0, 3, 4), buffer("b", 3, 9, 4), buffer("z", 0, 9, 0), buffer("e", 2, 2, 5)];
    check::check(&touching, &Plan::new(&touching, vec![0, 0, 0, 0]), 1).expect("touching lifetimes may share");
}

// ----- The benchmarks -----

#[test]
fn every_benchmark_plans_validly_and_never_worse_than_greedy() {
    let files = benchmarks();
    assert!(files.len() >= 7, "expected the MiniMalloc benchmarks, found {files:?}");
    for file in files {
        let buffers = csv::read(&file).expect("benchmark reads");
        let lower = plan::lower_bound(&buffers);
        let greedy = greedy::plan(&buffers, 1);
        check::check(&buffers, &greedy, 1).unwrap_or_else(|e| panic!("{}: greedy: {e}", file.display()));
        let (searched, report) = plan::plan_with_report(&buffers, &quick(300));
        check::check(&buffers, &searched, 1).unwrap_or_else(|e| panic!("{}: search: {e}", file.display()));
        assert!(searched.arena <= greedy.arena, "{}: {} > greedy {}", file.display(), searched.arena, greedy.arena);
        assert!(searched.arena >= lower, "{}: below the lower bound", file.display());
        assert_eq!(report.lower_bound, lower);
        assert_eq!(report.greedy_arena, greedy.arena);
        if report.optimal {
            assert!(searched.arena == lower || report.nodes > 0);
        }
    }
}

#[test]
fn greedy_lands_where_the_literature_says_on_the_benchmarks() {
    // MiniMalloc's paper: greedy best-fit is 1.25-1.41x above the optimum on A-K.
    for file in benchmarks().into_iter().filter(|f| f.to_string_lossy().contains(".1048576.")) {
        let buffers = csv::read(&file).expect("benchmark reads");
        let ratio = greedy::plan(&buffers, 1).arena as f64 / plan::lower_bound(&buffers) as f64;
        assert!((1.2..1.45).contains(&ratio), "{}: greedy ratio {ratio}", file.display());
    }
}

#[test]
fn the_example_reaches_its_capacity() {
    let buffers = example();
    let (p, report) = plan::plan_with_report(&buffers, &quick(1000));
    assert_eq!((p.arena, report.lower_bound, report.optimal), (12, 12, true));
}

#[test]
fn a_small_benchmark_reaches_the_lower_bound() {
    // C is the quickest to solve; a debug build still reaches its lower bound in a few seconds.
    let buffers = csv::read(&benchmark("C.1048576.csv")).expect("reads");
    let (p, report) = plan::plan_with_report(&buffers, &quick(20_000));
    check::check(&buffers, &p, 1).expect("valid");
    assert_eq!(p.arena, report.lower_bound);
    assert!(report.optimal);
}

#[test]
fn alignment_rounds_offsets_and_stays_valid() {
    let buffers: Vec<Buffer> =
        (0..12).map(|k| buffer(&format!("t{k}"), k % 5, k % 5 + 3 + k % 3, 10 + 37 * k)).collect();
    for strategy in [Method::Greedy, Method::Search] {
        let opts = PlanOptions { alignment: 64, time_limit: Duration::from_millis(500), strategy };
        let p = plan::plan(&buffers, &opts);
        check::check(&buffers, &p, 64).expect("valid and aligned");
        assert!(p.offsets.iter().all(|o| o % 64 == 0));
    }
}

#[test]
fn empty_and_degenerate_problems() {
    assert_eq!(plan::plan(&[], &quick(100)), Plan { offsets: vec![], arena: 0 });
    let odd = vec![buffer("zero", 0, 5, 0), buffer("never", 3, 3, 9), buffer("one", 1, 2, 7)];
    let p = plan::plan(&odd, &quick(100));
    check::check(&odd, &p, 1).expect("valid");
    assert_eq!(p.arena, 7);
    assert_eq!(plan::lower_bound(&odd), 7);
}

#[test]
fn svg_draws_a_box_per_buffer() {
    let buffers = example();
    let p = plan::plan(&buffers, &quick(100));
    let svg = plan::svg::render_svg(&buffers, &p);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>").count(), buffers.len());
    for b in &buffers {
        assert!(svg.contains(&format!("<title>{}:", b.id)), "{} missing", b.id);
    }
}

// ----- Random problems -----

/// The optimum by brute force: every order of the buffers, each put on top of the earlier
/// ones it conflicts with. Some order rebuilds any plan at no greater height (take the plan's
/// buffers by offset), so the minimum over all orders is optimal.
fn brute_force(buffers: &[Buffer]) -> u64 {
    fn go(buffers: &[Buffer], order: &mut Vec<usize>, offsets: &mut [u64], used: &mut [bool], best: &mut u64) {
        let height = order.iter().map(|&i| offsets[i] + buffers[i].size).max().unwrap_or(0);
        if height >= *best {
            return;
        }
        if order.len() == buffers.len() {
            *best = height;
            return;
        }
        for i in 0..buffers.len() {
            if used[i] {
                continue;
            }
            offsets[i] = order
                .iter()
                .filter(|&&j| buffers[i].conflicts(&buffers[j]))
                .map(|&j| offsets[j] + buffers[j].size)
                .max()
                .unwrap_or(0);
            used[i] = true;
            order.push(i);
            go(buffers, order, offsets, used, best);
            order.pop();
            used[i] = false;
        }
    }
    let mut best = u64::MAX;
    go(buffers, &mut Vec::new(), &mut vec![0; buffers.len()], &mut vec![false; buffers.len()], &mut best);
    best
}

fn problems(max_len: usize, max_time: u64, max_size: u64) -> impl Strategy<Value = Vec<Buffer>> {
    proptest::collection::vec((0..max_time, 1..=max_time / 2, 1..=max_size), 1..=max_len).prop_map(|spec| {
        spec.into_iter()
            .enumerate()
            .map(|(k, (lower, len, size))| buffer(&format!("b{k}"), lower, lower + len, size))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn small_problems_reach_the_brute_force_optimum(buffers in problems(7, 12, 9)) {
        let (p, report) = plan::plan_with_report(&buffers, &quick(2000));
        prop_assert!(check::check(&buffers, &p, 1).is_ok());
        prop_assert_eq!(p.arena, brute_force(&buffers));
        prop_assert!(report.optimal);
    }

    #[test]
    fn larger_problems_are_valid_and_never_worse_than_greedy(buffers in problems(40, 30, 64)) {
        let greedy = greedy::plan(&buffers, 1);
        prop_assert!(check::check(&buffers, &greedy, 1).is_ok());
        let p = plan::plan(&buffers, &quick(50));
        prop_assert!(check::check(&buffers, &p, 1).is_ok());
        prop_assert!(p.arena <= greedy.arena);
        prop_assert!(p.arena >= plan::lower_bound(&buffers));
    }

    #[test]
    fn aligned_plans_are_valid(buffers in problems(20, 20, 300), shift in 0u32..8) {
        let alignment = 1u64 << shift;
        let opts = PlanOptions { alignment, time_limit: Duration::from_millis(30), strategy: Method::Search };
        let p = plan::plan(&buffers, &opts);
        prop_assert!(check::check(&buffers, &p, alignment).is_ok());
        prop_assert!(p.arena <= greedy::plan(&buffers, alignment).arena);
    }
}

// ----- The command line -----

fn flint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flint")).args(args).current_dir(repo()).output().expect("the flint binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).unwrap_or("")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-plan-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn cli_plans_the_example_in_one_line() {
    let file = benchmark("input.12.csv");
    let o = flint(&["plan", file.to_str().unwrap_or_default()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    for (name, value) in [
        ("buffers", "5"),
        ("arena_bytes", "12"),
        ("lower_bound", "12"),
        ("ratio", "1.000"),
        ("capacity", "12"),
        ("fits", "yes"),
    ] {
        assert_eq!(field(&out, name), value, "{name} in {out}");
    }
    assert!(field(&out, "time_ms").parse::<f64>().is_ok(), "{out}");
}

#[test]
fn cli_greedy_and_search_side_by_side() {
    let file = benchmark("C.1048576.csv");
    let path = file.to_str().unwrap_or_default();
    let greedy = stdout(&flint(&["plan", "--greedy", path]));
    let searched = stdout(&flint(&["plan", "--time-limit-ms", "300", path]));
    let arena = |line: &str| field(line, "arena_bytes").parse::<u64>().unwrap_or(u64::MAX);
    assert!(arena(&searched) <= arena(&greedy), "{searched} vs {greedy}");
    assert_eq!(field(&greedy, "fits"), "no", "greedy does not fit C's capacity: {greedy}");
}

#[test]
fn cli_refuses_malformed_csv_with_the_line() {
    let dir = scratch("bad");
    let bad = dir.join("bad.16.csv");
    std::fs::write(&bad, "id,lower,upper,size\na,0,4,8\nb,2,oops,8\n").expect("write");
    let o = flint(&["plan", bad.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 3: upper `oops` is not a non-negative integer"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    let o = flint(&["plan", dir.join("missing.csv").to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn cli_writes_an_svg_and_reports_not_fitting() {
    let dir = scratch("svg");
    let tight = dir.join("tight.7.csv");
    std::fs::write(&tight, "id,lower,upper,size\na,0,4,4\nb,2,6,4\nc,5,9,4\n").expect("write");
    let svg = dir.join("plan.svg");
    let o = flint(&["plan", tight.to_str().unwrap_or_default(), "--svg", svg.to_str().unwrap_or_default()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!((field(&out, "arena_bytes"), field(&out, "capacity"), field(&out, "fits")), ("8", "7", "no"), "{out}");
    let drawing = std::fs::read_to_string(&svg).expect("svg written");
    assert_eq!(drawing.matches("<rect").count(), 4, "a background and three boxes");
}
