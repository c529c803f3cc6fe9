//! `ossterm verify`: the golden-logit checks on the chosen device, one line per fixture and
//! mode, and a non-zero exit when a tolerance is broken. How a GPU build is checked.

use std::io::Write;

use anyhow::Context;

use crate::cli::{DtypeChoice, VerifyArgs};
use crate::model::fidelity::{self, FixtureReport};
use crate::model::{Precision, device};

/// Runs the command.
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let (device, device_name) = device::select(args.device.unwrap_or_default())?;
    let modes = match args.dtype {
        Some(choice) => vec![Precision::from(choice)],
        None => vec![
            Precision::from(DtypeChoice::F32),
            Precision::from(DtypeChoice::Auto),
        ],
    };
    let mut reports: Vec<FixtureReport> = Vec::new();
    for dir in fidelity::fixture_dirs(&args.fixtures)? {
        for &precision in &modes {
            let report = fidelity::check_fixture(&dir, &device, precision, args.kernels.into())
                .with_context(|| format!("checking {}", dir.display()))?;
            if !args.json {
                print_report(&mut out, &report)?;
            }
            reports.push(report);
        }
    }
    let failures: Vec<String> = reports.iter().flat_map(FixtureReport::failures).collect();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "device": device_name,
                "reports": reports,
                "failures": failures,
            })
        )?;
    } else {
        writeln!(
            out,
            "{} on {device_name}: {} fixture run(s), {}",
            if failures.is_empty() { "PASS" } else { "FAIL" },
            reports.len(),
            if failures.is_empty() {
                "every tolerance met".to_string()
            } else {
                format!("{} tolerance(s) broken", failures.len())
            }
        )?;
        for failure in &failures {
            writeln!(out, "  {failure}")?;
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("the engine on {device_name} does not match the reference");
    }
    Ok(())
}

fn print_report(out: &mut impl Write, report: &FixtureReport) -> std::io::Result<()> {
    // The mode, and which tier held it where that is not the mode's own.
    let mode = match report.tier {
        fidelity::Tier::Q8 => format!("{} (q8)", report.precision),
        fidelity::Tier::Q8Dense => report.precision.clone(),
        fidelity::Tier::F32 | fidelity::Tier::Default => report.precision.clone(),
    };
    for p in &report.prompts {
        writeln!(
            out,
            "{:<14} {:<12} {:<12} max|d| {:.4}  mean|d| {:.4}  argmax {}/{}  nll {:.4} (ref {:.4})  greedy {}/{} {}",
            report.fixture,
            mode,
            p.prompt,
            p.max_diff,
            p.mean_diff,
            p.argmax_agree,
            p.positions,
            p.nll_mean,
            p.reference_nll_mean,
            p.greedy_agreed,
            p.greedy_compared,
            if p.failures.is_empty() { "ok" } else { "FAIL" },
        )?;
    }
    Ok(())
}
