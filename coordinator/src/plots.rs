//! PNG plots of a run: accuracy, self-verification F1, reward, self-reward MSE, response length and
//! throughput against the training step, drawn with plotters' bitmap backend from the rows of
//! `metrics.jsonl` (training steps) and of the evaluation log (held-out evaluations every K steps).
//!
//! Rows are read as plain JSON objects and series are picked by field name, so a plot keeps working
//! when rows gain fields, and a field that a run does not have is simply left out. Text is drawn
//! with an embedded DejaVu Sans (the `dejavu` crate) through ab_glyph: no system fonts are needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Where a series comes from: the training rows or the evaluation rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Train,
    Eval,
}

/// One standard plot: a file name, its title and y label, and the fields it draws.
#[derive(Debug, Clone, Copy)]
pub struct PlotSpec {
    pub file: &'static str,
    pub title: &'static str,
    pub y_label: &'static str,
    /// (source, field, legend label).
    pub series: &'static [(Source, &'static str, &'static str)],
    /// Fixed y range (rates); `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

/// The run's plots. Training fields are `StepMetrics` names; evaluation fields are
/// [`crate::eval_metrics::EvalReport`] names.
pub const RUN_PLOTS: &[PlotSpec] = &[
    PlotSpec {
        file: "accuracy.png",
        title: "Accuracy",
        y_label: "accuracy",
        series: &[
            (Source::Train, "accuracy", "train (rollouts)"),
            (Source::Eval, "pass_at_1", "held-out pass@1"),
            (Source::Eval, "maj_at_k", "held-out maj@k"),
            (
                Source::Eval,
                "self_weighted_maj_at_k",
                "held-out self-weighted maj@k",
            ),
        ],
        y_range: Some((0.0, 1.0)),
    },
    PlotSpec {
        file: "self_verify_f1.png",
        title: "Self-verification",
        y_label: "F1 / AUROC",
        series: &[
            (Source::Train, "self_verify_f1", "train F1"),
            (Source::Eval, "verify_f1", "held-out F1"),
            (Source::Eval, "auroc", "held-out AUROC"),
            (Source::Eval, "auroc_within", "AUROC within problems"),
        ],
        y_range: Some((0.0, 1.0)),
    },
    PlotSpec {
        file: "reward.png",
        title: "Verifier reward",
        y_label: "mean r_v",
        series: &[(Source::Train, "reward_mean", "train reward")],
        y_range: Some((0.0, 1.0)),
    },
    PlotSpec {
        file: "mse.png",
        title: "Self-reward MSE (r_s vs r_v)",
        y_label: "MSE",
        series: &[(Source::Train, "self_reward_mse", "train MSE")],
        y_range: None,
    },
    PlotSpec {
        file: "response_length.png",
        title: "Response length",
        y_label: "tokens",
        series: &[(Source::Train, "mean_response_len", "mean response tokens")],
        y_range: None,
    },
    PlotSpec {
        file: "throughput.png",
        title: "Throughput",
        y_label: "tokens / s",
        series: &[(Source::Train, "gen_tokens_per_sec", "generated tokens/s")],
        y_range: None,
    },
];

/// Reads a JSONL file into objects; a missing file is no rows. Errors name the file and line.
pub fn read_rows(path: &Path) -> Result<Vec<Value>, PlotError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(plot_err(path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Value>(l)
                .map_err(|e| plot_err(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// `(x, y)` of every row that has both fields as finite numbers.
pub fn series_points(rows: &[Value], x_field: &str, y_field: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| {
            let x = r.get(x_field)?.as_f64()?;
            let y = r.get(y_field)?.as_f64()?;
            (x.is_finite() && y.is_finite()).then_some((x, y))
        })
        .collect()
}

static FONT: Once = Once::new();

/// Registers the embedded font under plotters' "sans-serif" family (once per process).
fn register_font() {
    FONT.call_once(|| {
        // DejaVu Sans is a valid TrueType font, so this cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Draws `series` as lines (with point markers) into a PNG at `path`. With no points at all the
/// axes are drawn with a "no data yet" note, so the file always exists.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<(), PlotError> {
    register_font();
    let err = |e: &dyn std::fmt::Display| plot_err(path, e);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let (y0, y1) = match y_range {
        Some(r) => r,
        None => {
            let (lo, hi) = all
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.1), b.max(p.1))
                });
            if !lo.is_finite() {
                (0.0, 1.0)
            } else {
                let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-9);
                (
                    (lo - pad).min(if lo >= 0.0 { 0.0 } else { lo - pad }),
                    hi + pad,
                )
            }
        }
    };
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    // Steps are integers: no "10.0" tick labels once the axis spans a few steps.
    let integer_x = x1 - x0 >= 5.0;
    let x_fmt = move |x: &f64| {
        if integer_x {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    };
    chart
        .configure_mesh()
        .x_label_formatter(&x_fmt)
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let mut drawn = 0;
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if s.points.len() <= 60 {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        drawn += 1;
    }
    if drawn > 0 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
    } else {
        root.draw_text(
            "no data yet",
            &("sans-serif", 20)
                .into_font()
                .color(&RGBColor(120, 120, 120)),
            (360, 240),
        )
        .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes every plot of [`RUN_PLOTS`] into `out_dir` from training and evaluation rows (x = their
/// `step` field). Returns the files written.
pub fn write_run_plots(
    out_dir: &Path,
    train_rows: &[Value],
    eval_rows: &[Value],
) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(out_dir).map_err(|e| plot_err(out_dir, e))?;
    let mut written = Vec::with_capacity(RUN_PLOTS.len());
    for spec in RUN_PLOTS {
        let series: Vec<Series> = spec
            .series
            .iter()
            .map(|&(source, field, label)| Series {
                label: label.to_string(),
                points: series_points(
                    match source {
                        Source::Train => train_rows,
                        Source::Eval => eval_rows,
                    },
                    "step",
                    field,
                ),
            })
            .collect();
        let path = out_dir.join(spec.file);
        line_plot(
            &path,
            spec.title,
            "step",
            spec.y_label,
            &series,
            spec.y_range,
        )?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("laser-plots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A PNG's width and height from its IHDR chunk.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    #[test]
    fn run_plots_are_written() {
        let dir = scratch("run");
        let train: Vec<Value> = (0..50)
            .map(|s| {
                let t = s as f64 / 50.0;
                json!({"step": s, "accuracy": 0.3 + 0.4 * t, "self_verify_f1": 0.5 + 0.3 * t,
                       "reward_mean": 0.3 + 0.4 * t, "self_reward_mse": 0.4 - 0.3 * t,
                       "mean_response_len": 30.0 - 5.0 * t, "gen_tokens_per_sec": 4000.0 + s as f64})
            })
            .collect();
        let eval: Vec<Value> = (0..5)
            .map(|i| {
                json!({"step": i * 10, "pass_at_1": 0.3 + 0.08 * i as f64, "maj_at_k": 0.4,
                             "self_weighted_maj_at_k": 0.45, "verify_f1": null, "auroc": 0.7})
            })
            .collect();
        let files = write_run_plots(&dir, &train, &eval).unwrap();
        assert_eq!(files.len(), RUN_PLOTS.len());
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                bytes.len() > 5_000,
                "{} is only {} bytes",
                f.display(),
                bytes.len()
            );
            assert_eq!(png_size(&bytes), (800, 500), "{}", f.display());
        }
        // Text is drawn (not just lines): a plot with a title differs from one with another title.
        let a = dir.join("a.png");
        let b = dir.join("b.png");
        let s = [Series {
            label: "x".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
        }];
        line_plot(&a, "Title one", "step", "y", &s, None).unwrap();
        line_plot(&b, "Another title", "step", "y", &s, None).unwrap();
        assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_and_degenerate_inputs_still_plot() {
        let dir = scratch("empty");
        let files = write_run_plots(&dir, &[], &[]).unwrap();
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 1_000);
        }
        // One point, a constant series, and non-finite values.
        let rows = vec![
            json!({"step": 3, "mean_response_len": 12.0}),
            json!({"step": 4, "mean_response_len": "NaN"}),
            json!({"step": 5}),
        ];
        assert_eq!(
            series_points(&rows, "step", "mean_response_len"),
            [(3.0, 12.0)]
        );
        write_run_plots(&dir, &rows, &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rows_are_read_with_named_errors() {
        let dir = scratch("rows");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("metrics.jsonl");
        assert!(read_rows(&p).unwrap().is_empty());
        std::fs::write(&p, "{\"step\": 0}\n\n{\"step\": 1}\n").unwrap();
        assert_eq!(read_rows(&p).unwrap().len(), 2);
        std::fs::write(&p, "{\"step\": 0}\n{oops\n").unwrap();
        let e = read_rows(&p).unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl") && e.contains("line 2"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
