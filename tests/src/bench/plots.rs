//! The report's pictures, as SVG text drawn with plotters' SVG backend (labels stay SVG `<text>`,
//! so no font file is read): the latency distribution of each scenario at the fixed rate, and
//! throughput and CPU per request at saturation. Each scenario keeps one colour in every picture;
//! the HTTP/2 scenarios appear beside the HTTP/1.1 ones (keep-alive only), their latency lines
//! labelled as h2load's (from each request's send).

use anyhow::{Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::load::Mode;
use super::report::{Results, Spread};
use super::scenario::{Protocol, Scenario};

const WIDTH: u32 = 960;
const FONT: &str = "sans-serif";
/// The categorical axes' label area: room for "h2-mirror-degraded".
const NAMES_WIDTH: u32 = 150;

/// One picture: what the file name ends with, what it shows, and its SVG (or why it could not
/// be drawn).
pub struct Picture {
    /// `latency`, `throughput` or `cpu`: the file is `results-<date>-<suffix>.svg`.
    pub suffix: &'static str,
    pub title: String,
    pub svg: Result<String>,
}

/// Every picture the results have data for.
pub fn draw(results: &Results<'_>, rate: f64) -> Vec<Picture> {
    let mut pictures = Vec::new();
    let lines = latency_lines(results);
    let http2 = results
        .scenarios
        .iter()
        .any(|s| s.protocol() == Protocol::Http2);
    if !lines.is_empty() {
        // h2load's lines say in their labels that they count from each send.
        let title = if results.http1_paced_by_h2load() {
            format!(
                "Latency at a fixed {rate:.0} requests/s, keep-alive, every repetition pooled \
                 (HTTP/1.1 too: h2load `--h1`, from each send)"
            )
        } else if http2 {
            format!(
                "Latency at a fixed {rate:.0} requests/s, keep-alive, every repetition pooled \
                 (HTTP/1.1: open loop)"
            )
        } else {
            format!(
                "Latency at a fixed {rate:.0} requests/s, keep-alive (open loop), every repetition \
                 pooled"
            )
        };
        pictures.push(Picture {
            suffix: "latency",
            svg: latency_svg(&title, &lines),
            title,
        });
    }
    let reps = results.repetitions();
    let over = if reps < 2 {
        "one repetition: no whiskers".to_owned()
    } else {
        format!("whiskers: min–max over {reps} repetitions")
    };
    // One panel per mode, one bar per scenario that has the numbers.
    let panels = |bar: &dyn Fn(Scenario, Mode) -> Option<Bar>| -> Vec<Vec<Bar>> {
        Mode::ALL
            .iter()
            .map(|&mode| {
                results
                    .scenarios
                    .iter()
                    .filter_map(|&scenario| bar(scenario, mode))
                    .collect()
            })
            .collect()
    };
    let throughput = panels(&|scenario, mode| {
        Some(Bar {
            scenario,
            parts: vec![results.throughput(scenario, mode)?],
            whole: None,
        })
    });
    if throughput.iter().any(|panel| !panel.is_empty()) {
        let title = if http2 {
            "Throughput at saturation (closed loop: wrk, and h2load for HTTP/2)"
        } else {
            "Throughput at saturation (wrk, closed loop)"
        }
        .to_owned();
        let note = format!("bars: medians; {over}");
        pictures.push(Picture {
            suffix: "throughput",
            svg: bars_svg(&title, &note, "requests/s", &throughput, &[]),
            title,
        });
    }
    let cpu = panels(&|scenario, mode| {
        let split = results.cpu_split(scenario, mode);
        // Direct has no proxy: its share is 0, not missing.
        let parts = [split.proxy, split.primary, split.shadow, split.client]
            .iter()
            .map(|part| part.unwrap_or(ZERO))
            .collect();
        Some(Bar {
            scenario,
            parts,
            whole: Some(split.total?),
        })
    });
    if cpu.iter().any(|panel| !panel.is_empty()) {
        let title = "CPU per request at saturation, by process".to_owned();
        let whiskers_of = if reps < 2 {
            ""
        } else {
            ", of the proxy's share and of the total"
        };
        let note = format!("bars: medians of each process's share; {over}{whiskers_of}");
        pictures.push(Picture {
            suffix: "cpu",
            svg: bars_svg(&title, &note, "CPU µs per request", &cpu, &CPU_PARTS),
            title,
        });
    }
    pictures
}

const ZERO: Spread = Spread {
    median: 0.0,
    min: 0.0,
    max: 0.0,
    n: 0,
};

/// The parts of a CPU bar, in drawing order, with their colours.
const CPU_PARTS: [(&str, RGBColor); 4] = [
    ("proxy (daemon or nginx)", RGBColor(31, 119, 180)),
    ("primary (nginx)", RGBColor(148, 103, 189)),
    ("healthy shadow (nginx)", RGBColor(44, 160, 44)),
    (
        "load generator and in-process shadows",
        RGBColor(170, 170, 170),
    ),
];

/// Each scenario's colour (a colour-blind-safe palette).
fn colour(scenario: Scenario) -> RGBColor {
    match scenario {
        Scenario::Direct => RGBColor(0, 0, 0),
        Scenario::Intercept => RGBColor(0, 114, 178),
        Scenario::Mirror => RGBColor(0, 158, 115),
        Scenario::Degraded => RGBColor(230, 159, 0),
        Scenario::NginxMirror => RGBColor(213, 94, 0),
        Scenario::NginxDegraded => RGBColor(204, 121, 167),
        // Darker or lighter neighbours of their HTTP/1.1 counterparts' colours.
        Scenario::H2Direct => RGBColor(120, 120, 120),
        Scenario::H2Intercept => RGBColor(86, 180, 233),
        Scenario::H2Mirror => RGBColor(0, 90, 65),
        Scenario::H2Degraded => RGBColor(150, 100, 0),
        // mirror's green, lighter; compare in a purple of its own.
        Scenario::MirrorJson => RGBColor(100, 200, 160),
        Scenario::Compare => RGBColor(110, 60, 150),
    }
}

/// The percentile axis: x = −log10(1 − q), so 90, 99, 99.9 … are evenly spaced.
const NINES: [(f64, &str); 6] = [
    (0.0, "0"),
    (std::f64::consts::LOG10_2, "50"),
    (1.0, "90"),
    (2.0, "99"),
    (3.0, "99.9"),
    (4.0, "99.99"),
];

/// One scenario's percentile curve: (nines, µs) points, and how many requests it rests on.
pub struct LatencyLine {
    pub scenario: Scenario,
    pub points: Vec<(f64, f64)>,
    pub requests: u64,
}

/// The keep-alive fixed-rate curves, up to the percentile the pooled requests can show
/// (1 − 1/n, at most 99.99).
pub fn latency_lines(results: &Results<'_>) -> Vec<LatencyLine> {
    results
        .scenarios
        .iter()
        .filter_map(|&scenario| {
            let pooled = results.pooled_latency(scenario, Mode::KeepAlive)?;
            let requests = pooled.len();
            let last = (requests as f64).log10().min(4.0);
            let steps = (last / 0.02).ceil() as usize;
            let points = (0..=steps)
                .map(|i| {
                    let nines = (i as f64 * 0.02).min(last);
                    let quantile = 1.0 - 10f64.powf(-nines);
                    (nines, pooled.value_at_quantile(quantile).max(1) as f64)
                })
                .collect();
            Some(LatencyLine {
                scenario,
                points,
                requests,
            })
        })
        .collect()
}

fn latency_svg(title: &str, lines: &[LatencyLine]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let values = lines
            .iter()
            .flat_map(|line| line.points.iter().map(|p| p.1));
        let lowest = values.clone().fold(f64::INFINITY, f64::min);
        let highest = values.fold(1.0, f64::max);
        let last = lines
            .iter()
            .filter_map(|line| line.points.last().map(|p| p.0))
            .fold(0.0, f64::max);
        let key_points: Vec<f64> = NINES
            .iter()
            .map(|(nines, _)| *nines)
            .filter(|nines| *nines <= last + 1e-9)
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(
                Ticks::new(0.0..last.max(0.1), key_points),
                (lowest * 0.8..highest * 1.25).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("percentile (%), on a scale of nines")
            .y_desc("latency (log scale)")
            .x_label_formatter(&|nines| nines_label(*nines))
            .y_label_formatter(&|us| duration_label(*us))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .draw()?;
        for line in lines {
            let style = colour(line.scenario).stroke_width(2);
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))?
                .label(match line.scenario.protocol() {
                    Protocol::Http1 => {
                        format!("{} ({} requests)", line.scenario.key(), line.requests)
                    }
                    Protocol::Http2 => format!(
                        "{} (h2load, from each send; {} requests)",
                        line.scenario.key(),
                        line.requests
                    ),
                })
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            // Curves rise to the right: the lower right is where they are not.
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// A linear axis with labels and grid lines at given points only. (plotters' own
/// `with_key_points` on an f64 range has no label formatter in 0.3.7.)
struct Ticks {
    linear: RangedCoordf64,
    at: Vec<f64>,
}

impl Ticks {
    fn new(range: std::ops::Range<f64>, at: Vec<f64>) -> Ticks {
        Ticks {
            linear: range.into(),
            at,
        }
    }
}

impl Ranged for Ticks {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.at.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.linear.range()
    }
}

fn nines_label(nines: f64) -> String {
    NINES
        .iter()
        .find(|(at, _)| (at - nines).abs() < 1e-6)
        .map_or_else(
            || format!("{:.2}", 100.0 * (1.0 - 10f64.powf(-nines))),
            |(_, label)| (*label).to_owned(),
        )
}

/// Microseconds in the unit that reads best.
fn duration_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} µs", trim(us))
    }
}

/// A number with no more digits than it needs (1, 2.5, 120).
fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One bar: a scenario and its parts' medians, stacked left to right (one part: a plain bar).
pub struct Bar {
    pub scenario: Scenario,
    pub parts: Vec<Spread>,
    /// The whole's own median and range, where the parts are shares of it (the medians of the
    /// parts need not add up to the median of the whole).
    pub whole: Option<Spread>,
}

/// Horizontal bars, one panel per mode (keep-alive, new connection), scenarios top to bottom
/// in run order. A plain bar has the scenario's colour and its range as a whisker; a stacked
/// bar has `parts`' colours, a whisker for its first part and one for the whole.
fn bars_svg(
    title: &str,
    note: &str,
    unit: &str,
    panels: &[Vec<Bar>],
    parts: &[(&str, RGBColor)],
) -> Result<String> {
    let rows = panels.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let panel_height = 70 + 44 * rows as u32;
    let legend_height = if parts.is_empty() { 30 } else { 60 };
    let height = 40 + panel_height * panels.len() as u32 + legend_height;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, (FONT, 18))?;
        let (body, legend) = root.split_vertically(height - 40 - legend_height);
        let areas = body.split_evenly((panels.len(), 1));
        for ((bars, area), mode) in panels.iter().zip(&areas).zip(Mode::ALL) {
            draw_bars(area, mode, unit, bars, parts)?;
        }
        draw_legend(&legend, parts, note)?;
        root.present()?;
    }
    Ok(svg)
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    mode: Mode,
    unit: &str,
    bars: &[Bar],
    parts: &[(&str, RGBColor)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let stacked = |bar: &Bar| bar.parts.iter().map(|p| p.median.max(0.0)).sum::<f64>();
    let widest = bars
        .iter()
        .map(|bar| {
            let whiskers = bar.parts[0].max.max(bar.whole.map_or(0.0, |w| w.max));
            stacked(bar).max(whiskers)
        })
        .fold(0.0, f64::max)
        .max(1.0);
    let rows = bars.len().max(1);
    // Row i (run order) is drawn at y = rows - 1 - i, so the first scenario is on top.
    let y_of = |i: usize| (rows - 1 - i) as f64;
    let names: Vec<&str> = bars.iter().map(|bar| bar.scenario.key()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(mode_caption(mode), (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(NAMES_WIDTH)
        .build_cartesian_2d(
            0.0..widest * 1.2,
            Ticks::new(
                -0.5..rows as f64 - 0.5,
                (0..rows).map(|i| i as f64).collect(),
            ),
        )?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(unit)
        .x_label_formatter(&|x| thousands(*x))
        .y_label_formatter(&|y| {
            let i = rows as f64 - 1.0 - y.round();
            names
                .get(i.max(0.0) as usize)
                .map_or_else(String::new, |name| (*name).to_owned())
        })
        .axis_desc_style((FONT, 14))
        .label_style((FONT, 14))
        .draw()?;
    for (i, bar) in bars.iter().enumerate() {
        let y = y_of(i);
        let mut start = 0.0;
        for (k, part) in bar.parts.iter().enumerate() {
            let width = part.median.max(0.0);
            let fill = parts.get(k).map_or(colour(bar.scenario), |(_, c)| *c);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(start, y - 0.32), (start + width, y + 0.32)],
                fill.filled(),
            )))?;
            start += width;
        }
        let first = bar.parts[0];
        let mut whiskers = vec![first];
        whiskers.extend(bar.whole);
        for whisker in whiskers.iter().filter(|w| w.n > 1 && w.max > 0.0) {
            chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                y,
                whisker.min,
                whisker.median,
                whisker.max,
                BLACK.stroke_width(2),
                10,
            )))?;
        }
        let (label, end) = match bar.whole {
            None => (thousands(first.median), first.max),
            // No proxy (direct): the total alone.
            Some(whole) if first.max <= 0.0 => (thousands(whole.median), whole.max),
            Some(whole) => (
                format!(
                    "{} (proxy {})",
                    thousands(whole.median),
                    thousands(first.median)
                ),
                whole.max.max(stacked(bar)),
            ),
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at((end, y))
                + Text::new(label, (8, -7), (FONT, 13).into_font().color(&BLACK)),
        ))?;
    }
    Ok(())
}

/// A whole number with thousands separated: 103,000.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < -0.5 {
        out.insert(0, '-');
    }
    out
}

fn mode_caption(mode: Mode) -> &'static str {
    match mode {
        Mode::KeepAlive => "keep-alive",
        Mode::NewConnection => "new connection per request",
    }
}

/// The colours of a stacked bar's parts (if any) and a line saying what bars and whiskers are.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    parts: &[(&str, RGBColor)],
    note: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let note_y = if parts.is_empty() { 6 } else { 36 };
    area.draw(&Text::new(
        note.to_owned(),
        (NAMES_WIDTH as i32, note_y),
        (FONT, 13).into_font().color(&BLACK),
    ))?;
    let mut x = NAMES_WIDTH as i32;
    for (name, colour) in parts {
        area.draw(&Rectangle::new([(x, 12), (x + 16, 26)], colour.filled()))?;
        area.draw(&Text::new(
            (*name).to_owned(),
            (x + 22, 12),
            (FONT, 14).into_font().color(&BLACK),
        ))?;
        x += 30 + (*name).len() as i32 * 7;
    }
    Ok(())
}

/// Writes each picture beside the report, `<stem>-<suffix>.svg`, and returns the markdown that
/// links them (relative paths), or says why one is missing.
pub fn write_beside(
    pictures: &[Picture],
    directory: &std::path::Path,
    stem: &str,
) -> (String, Vec<std::path::PathBuf>) {
    let mut markdown = String::from("### Pictures\n\n");
    let mut written = Vec::new();
    for picture in pictures {
        let name = format!("{stem}-{}.svg", picture.suffix);
        let path = directory.join(&name);
        let outcome = picture
            .svg
            .as_ref()
            .map_err(|e| format!("{e:#}"))
            .and_then(|svg| {
                std::fs::write(&path, svg)
                    .with_context(|| format!("cannot write {}", path.display()))
                    .map_err(|e| format!("{e:#}"))
            });
        match outcome {
            Ok(()) => {
                markdown.push_str(&format!("![{}]({name})\n\n", picture.title));
                written.push(path);
            }
            Err(error) => {
                markdown.push_str(&format!("- {}: not drawn ({error})\n\n", picture.title));
            }
        }
    }
    (markdown, written)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Measured};
    use super::super::scenario::Run;
    use super::*;

    const SCENARIOS: [Scenario; 10] = Scenario::ALL;

    fn measured(scenario: Scenario, rep: usize) -> Measured {
        let index = SCENARIOS.iter().position(|s| *s == scenario).unwrap_or(0) as f64;
        Measured {
            p99: 200.0 * (index + 1.0) + 10.0 * rep as f64,
            cpu: 0.05 * index,
            rps: 10_000.0 / (index + 1.0) + 100.0 * rep as f64,
            proxy_us: 10.0 * index,
            rest_us: 20.0,
        }
    }

    fn pictures(scenarios: &[Scenario], reps: usize) -> Vec<(String, String)> {
        let runs = fixture::runs(scenarios, reps, 0.5, measured);
        let results = Results {
            runs: &runs,
            scenarios,
        };
        draw(&results, 1000.0)
            .into_iter()
            .map(|picture| {
                let svg = picture
                    .svg
                    .unwrap_or_else(|e| panic!("{} not drawn: {e:#}", picture.suffix));
                (picture.suffix.to_owned(), svg)
            })
            .collect()
    }

    fn hex(colour: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2)
    }

    /// The picture's elements named `tag` whose `attribute` is `value` (case-insensitively).
    fn elements<'a>(
        svg: &'a roxmltree::Document<'a>,
        tag: &str,
        attribute: &str,
        value: &str,
    ) -> Vec<roxmltree::Node<'a, 'a>> {
        svg.descendants()
            .filter(|n| n.has_tag_name(tag))
            .filter(|n| {
                n.attribute(attribute)
                    .is_some_and(|a| a.eq_ignore_ascii_case(value))
            })
            .collect()
    }

    fn texts(svg: &roxmltree::Document<'_>) -> Vec<String> {
        svg.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
            .collect()
    }

    #[test]
    fn every_picture_is_well_formed_svg_with_a_title_and_axis_names() {
        let drawn = pictures(&SCENARIOS, 3);
        let suffixes: Vec<&str> = drawn.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(suffixes, ["latency", "throughput", "cpu"]);
        for (suffix, svg) in &drawn {
            let document = roxmltree::Document::parse(svg)
                .unwrap_or_else(|e| panic!("{suffix}: not XML: {e}\n{svg}"));
            assert!(document.root_element().has_tag_name("svg"), "{suffix}");
            let texts = texts(&document);
            let has = |needle: &str| texts.iter().any(|t| t.contains(needle));
            let (title, axis) = match suffix.as_str() {
                "latency" => ("Latency at a fixed 1000 requests/s", "latency (log scale)"),
                "throughput" => ("Throughput at saturation", "requests/s"),
                _ => ("CPU per request at saturation", "CPU µs per request"),
            };
            assert!(has(title) && has(axis), "{suffix}: {texts:?}");
        }
    }

    #[test]
    fn latency_picture_draws_one_percentile_line_per_scenario() {
        let drawn = pictures(&SCENARIOS, 2);
        let svg = &drawn[0].1;
        let document = roxmltree::Document::parse(svg).expect("XML");
        for scenario in SCENARIOS {
            // The curve has many points; its legend sample is a two-point line.
            let curves: Vec<usize> =
                elements(&document, "polyline", "stroke", &hex(colour(scenario)))
                    .iter()
                    .map(|line| {
                        line.attribute("points")
                            .unwrap_or("")
                            .split_whitespace()
                            .count()
                    })
                    .filter(|&points| points > 20)
                    .collect();
            assert_eq!(curves.len(), 1, "{}: {curves:?}", scenario.key());
        }
        let texts = texts(&document);
        for label in [
            "90",
            "99",
            "99.9",
            "mirror-degraded (2000 requests)",
            "h2-mirror-degraded (h2load, from each send; 2000 requests)",
        ] {
            assert!(texts.iter().any(|t| t == label), "{label}: {texts:?}");
        }
        // 2000 pooled requests show up to the 99.95th percentile, not the 99.99th.
        assert!(!texts.iter().any(|t| t == "99.99"), "{texts:?}");
    }

    #[test]
    fn bar_pictures_draw_each_scenario_in_both_modes() {
        let scenarios = [Scenario::Direct, Scenario::Mirror, Scenario::NginxMirror];
        let drawn = pictures(&scenarios, 3);
        let throughput = roxmltree::Document::parse(&drawn[1].1).expect("XML");
        for scenario in scenarios {
            let bars = elements(&throughput, "rect", "fill", &hex(colour(scenario)));
            assert_eq!(bars.len(), 2, "{}", scenario.key());
        }
        // Not run, not drawn.
        let intercept = elements(
            &throughput,
            "rect",
            "fill",
            &hex(colour(Scenario::Intercept)),
        );
        assert!(intercept.is_empty());
        let cpu = roxmltree::Document::parse(&drawn[2].1).expect("XML");
        for (part, colour) in CPU_PARTS {
            // One segment per scenario and mode, and one legend swatch.
            let segments = elements(&cpu, "rect", "fill", &hex(colour));
            assert_eq!(segments.len(), 2 * scenarios.len() + 1, "{part}");
        }
        let texts = texts(&cpu);
        assert!(texts.iter().any(|t| t == "60 (proxy 40)"), "{texts:?}");
    }

    #[test]
    fn http2_scenarios_have_keep_alive_bars_only() {
        let scenarios = [Scenario::Mirror, Scenario::H2Direct, Scenario::H2Mirror];
        let drawn = pictures(&scenarios, 2);
        let throughput = roxmltree::Document::parse(&drawn[1].1).expect("XML");
        let bars = |scenario| elements(&throughput, "rect", "fill", &hex(colour(scenario))).len();
        assert_eq!(bars(Scenario::Mirror), 2);
        assert_eq!(bars(Scenario::H2Direct), 1);
        assert_eq!(bars(Scenario::H2Mirror), 1);
        let texts = texts(&throughput);
        assert!(texts.iter().any(|t| t == "h2-mirror"), "{texts:?}");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        let shown: Vec<String> = [0.0, 999.4, 1000.0, 36333.3, 1_234_567.0, -4200.0]
            .into_iter()
            .map(thousands)
            .collect();
        assert_eq!(
            shown,
            ["0", "999", "1,000", "36,333", "1,234,567", "-4,200"]
        );
    }

    #[test]
    fn no_latency_picture_without_fixed_rate_latencies() {
        let mut runs = fixture::runs(&[Scenario::Direct], 1, 0.5, measured);
        for phase in &mut runs[0].phases {
            phase.load.distribution = None;
        }
        let results = Results {
            runs: &runs,
            scenarios: &[Scenario::Direct],
        };
        let suffixes: Vec<&str> = draw(&results, 1000.0).iter().map(|p| p.suffix).collect();
        assert_eq!(suffixes, ["throughput", "cpu"]);
    }

    #[test]
    fn the_latency_title_names_the_http1_client() {
        let scenarios = [Scenario::Mirror, Scenario::H2Mirror];
        let mut runs = fixture::runs(&scenarios, 1, 0.5, measured);
        let title = |runs: &[Run]| -> String {
            let results = Results {
                runs,
                scenarios: &scenarios,
            };
            draw(&results, 1000.0)
                .into_iter()
                .find(|p| p.suffix == "latency")
                .map(|p| p.title)
                .expect("a latency picture")
        };
        assert!(
            title(&runs).ends_with("(HTTP/1.1: open loop)"),
            "{}",
            title(&runs)
        );
        fixture::paced_by_h2load(&mut runs[0]);
        assert!(
            title(&runs).ends_with("(HTTP/1.1 too: h2load `--h1`, from each send)"),
            "{}",
            title(&runs)
        );
    }
}
