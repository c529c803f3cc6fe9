//! `ossterm bench --repeat`: llama-bench-style samples, each prefill and decode starting at the
//! depth, and `--pp 0` for a decode-only run (the side-by-side with llama.cpp runs these).

mod common;

use common::cli::{json_lines, ossterm};

#[test]
fn bench_repeats_each_test_from_the_depth_and_prints_every_sample() {
    // 600 > the 512-token fill chunk, and far past the 128-token sliding window: each sample
    // has to get the windows back from the snapshot at the depth.
    let (ok, stdout, stderr) = ossterm(&[
        "bench",
        "--synthetic",
        "gpt-oss-20b",
        "--layers",
        "2",
        "--pp",
        "4",
        "--tg",
        "2",
        "--depth",
        "0,600",
        "--repeat",
        "3",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let rows = json_lines(&stdout);
    assert_eq!(rows.len(), 2);
    for (row, depth) in rows.iter().zip([0, 600]) {
        assert_eq!(row["depth"], depth);
        assert_eq!(row["repeat"], 3);
        // Decode starts at the depth, as llama-bench's tg does, not after the prefill.
        assert_eq!(row["tg_start_position"], depth);
        for (samples, mean) in [
            ("pp_samples_tok_s", "pp_tok_s"),
            ("tg_samples_tok_s", "tg_tok_s"),
        ] {
            let values: Vec<f64> = row[samples]
                .as_array()
                .unwrap_or_else(|| panic!("{samples} in {row}"))
                .iter()
                .map(|v| v.as_f64().expect("a number"))
                .collect();
            assert_eq!(values.len(), 3, "{samples}: {row}");
            assert!(values.iter().all(|v| *v > 0.0), "{samples}: {row}");
            let average = values.iter().sum::<f64>() / 3.0;
            let reported = row[mean].as_f64().expect("mean");
            assert!((reported - average).abs() < 1e-9 * average, "{mean}: {row}");
        }
    }
}

#[test]
fn bench_pp_0_times_only_the_decode() {
    let (ok, stdout, stderr) = ossterm(&[
        "bench",
        "--synthetic",
        "gpt-oss-20b",
        "--layers",
        "1",
        "--pp",
        "0",
        "--tg",
        "2",
        "--repeat",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| gpt-oss-20b"))
        .unwrap_or_else(|| panic!("a result row in {stdout}"));
    assert!(row.contains("| - | "), "no prefill figure: {row}");
    assert!(row.contains("(tg2)"), "{row}");
    let note = stdout
        .lines()
        .find(|l| l.starts_with("depth 0:"))
        .unwrap_or_else(|| panic!("a depth note in {stdout}"));
    let tg = note
        .split("samples: pp - t/s, tg ")
        .nth(1)
        .unwrap_or_else(|| panic!("no prefill samples, then the decode's: {note}"));
    let values: Vec<&str> = tg.trim_end_matches(" t/s").split(" / ").collect();
    assert_eq!(values.len(), 2, "{note}");
    for v in values {
        assert!(v.parse::<f64>().expect("a number") > 0.0, "{note}");
    }
}

#[test]
fn bench_refuses_a_repeat_count_outside_1_to_100() {
    for bad in ["0", "101"] {
        let (ok, _, stderr) = ossterm(&["bench", "--synthetic", "gpt-oss-20b", "--repeat", bad]);
        assert!(!ok);
        assert!(
            stderr.contains(&format!("invalid value '{bad}' for '--repeat <REPEAT>'"))
                && stderr.contains("1..=100"),
            "{stderr}"
        );
    }
}
