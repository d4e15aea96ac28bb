//! The loss curve written at the end of training: the training loss per iteration
//! (faint), its moving average, and the validation losses, against the iteration.

use super::raster::{Canvas, Rgb, GLYPH_HEIGHT};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 520;
const LEFT: i64 = 80;
const RIGHT: i64 = 24;
const TOP: i64 = 40;
const BOTTOM: i64 = 60;
const TEXT: Rgb = [40, 40, 40];
const GRID: Rgb = [228, 228, 228];
const RAW: Rgb = [170, 200, 235];
const SMOOTH: Rgb = [25, 90, 170];
const VALID: Rgb = [210, 60, 40];

/// Tick positions inside `lo..=hi`, about `count` of them, a step of 1, 2 or 5 × 10ⁿ
/// apart (the one nearest `(hi - lo) / count`).
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let distance = |s: f64| (s / raw).ln().abs();
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .unwrap_or(magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{v:.decimals$}")
}

/// Centred moving average over `window` points (shorter at the ends).
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let half = window / 2;
    (0..values.len())
        .map(|i| {
            let part = &values[i.saturating_sub(half)..(i + half + 1).min(values.len())];
            part.iter().sum::<f64>() / part.len() as f64
        })
        .collect()
}

/// Draws the curves; `train` and `validation` are (iteration, loss) points, non-finite
/// losses left out.
pub fn draw(train: &[(f64, f64)], validation: &[(f64, f64)], title: &str) -> Canvas {
    let mut c = Canvas::new(WIDTH, HEIGHT, [255; 3]);
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let train: Vec<(f64, f64)> = train.iter().filter(finite).copied().collect();
    let validation: Vec<(f64, f64)> = validation.iter().filter(finite).copied().collect();
    let all = || train.iter().chain(&validation);
    let (x_lo, x_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y_lo, y_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    c.text((LEFT, 12), title, TEXT, 2);
    if !x_lo.is_finite() {
        c.text((LEFT, TOP + 40), "no finite loss to plot", TEXT, 2);
        return c;
    }
    let (x_lo, x_hi) = if x_hi > x_lo { (x_lo, x_hi) } else { (x_lo - 1.0, x_hi + 1.0) };
    let pad = ((y_hi - y_lo) * 0.05).max(1e-6);
    let (y_lo, y_hi) = ((y_lo - pad).max(0.0f64.min(y_lo)), y_hi + pad);
    let (plot_w, plot_h) = (i64::from(WIDTH) - LEFT - RIGHT, i64::from(HEIGHT) - TOP - BOTTOM);
    let px = |x: f64| LEFT + ((x - x_lo) / (x_hi - x_lo) * plot_w as f64).round() as i64;
    let py = |y: f64| TOP + plot_h - ((y - y_lo) / (y_hi - y_lo) * plot_h as f64).round() as i64;

    let y_ticks = ticks(y_lo, y_hi, 6);
    let y_step = y_ticks.get(1).zip(y_ticks.first()).map_or(1.0, |(b, a)| b - a);
    for &t in &y_ticks {
        c.line((LEFT, py(t)), (LEFT + plot_w, py(t)), GRID, 1);
        let text = label(t, y_step);
        c.text((LEFT - 8 - Canvas::text_width(&text, 1) * 2, py(t) - GLYPH_HEIGHT), &text, TEXT, 2);
    }
    let x_ticks = ticks(x_lo, x_hi, 8);
    let x_step = x_ticks.get(1).zip(x_ticks.first()).map_or(1.0, |(b, a)| b - a);
    for &t in &x_ticks {
        c.line((px(t), TOP), (px(t), TOP + plot_h), GRID, 1);
        let text = label(t, x_step);
        c.text((px(t) - Canvas::text_width(&text, 2) / 2, TOP + plot_h + 8), &text, TEXT, 2);
    }
    c.line((LEFT, TOP + plot_h), (LEFT + plot_w, TOP + plot_h), TEXT, 1);
    c.line((LEFT, TOP), (LEFT, TOP + plot_h), TEXT, 1);
    c.text((LEFT + plot_w / 2 - Canvas::text_width("iteration", 2) / 2, i64::from(HEIGHT) - 22), "iteration", TEXT, 2);

    let polyline = |c: &mut Canvas, points: &[(f64, f64)], colour: Rgb, thickness: i64| {
        for pair in points.windows(2) {
            c.line((px(pair[0].0), py(pair[0].1)), (px(pair[1].0), py(pair[1].1)), colour, thickness);
        }
    };
    polyline(&mut c, &train, RAW, 1);
    let losses: Vec<f64> = train.iter().map(|p| p.1).collect();
    let smooth = moving_average(&losses, (train.len() / 40).max(1) * 2 + 1);
    let smooth: Vec<(f64, f64)> = train.iter().zip(smooth).map(|(p, s)| (p.0, s)).collect();
    polyline(&mut c, &smooth, SMOOTH, 2);
    polyline(&mut c, &validation, VALID, 2);
    for &(x, y) in &validation {
        c.fill_rect((px(x) - 3, py(y) - 3), (px(x) + 3, py(y) + 3), VALID);
    }

    let mut legend_x = LEFT + plot_w;
    for (name, colour, shown) in
        [("validation", VALID, !validation.is_empty()), ("moving average", SMOOTH, true), ("training loss", RAW, true)]
    {
        if shown {
            legend_x -= Canvas::text_width(name, 2) + 40;
            c.fill_rect((legend_x, 18), (legend_x + 14, 26), colour);
            c.text((legend_x + 20, 15), name, TEXT, 2);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = ticks(0.13, 1.47, 6);
        assert!(t.iter().all(|v| (0.13..=1.47).contains(v)));
        assert!((t[1] - t[0] - 0.2).abs() < 1e-12);
        assert_eq!(ticks(0.0, 300.0, 8), (0..=6).map(|i| f64::from(i) * 50.0).collect::<Vec<_>>());
    }

    #[test]
    fn the_moving_average_of_a_constant_is_that_constant() {
        assert_eq!(moving_average(&[2.0; 7], 3), vec![2.0; 7]);
        assert_eq!(moving_average(&[0.0, 3.0, 0.0], 3), vec![1.5, 1.0, 1.5]);
    }

    #[test]
    fn a_falling_loss_is_drawn_from_the_top_left_to_the_bottom_right() {
        let train: Vec<(f64, f64)> = (1..=100).map(|i| (f64::from(i), 1.0 / f64::from(i))).collect();
        let c = draw(&train, &[(50.0, 0.1), (100.0, 0.05)], "loss");
        let ink = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).any(|(x, y)| c.get(x, y) == SMOOTH)
        };
        let (mid_x, mid_y) = (WIDTH / 2, HEIGHT / 2);
        assert!(ink(LEFT as u32, LEFT as u32 + 20, TOP as u32, mid_y), "high loss at the start");
        assert!(ink(mid_x, WIDTH - RIGHT as u32, mid_y, HEIGHT - BOTTOM as u32 + 1), "low loss at the end");
        assert!(!ink(mid_x, WIDTH - RIGHT as u32, TOP as u32 + 40, mid_y - 40), "nothing high at the end");
        assert!((0..WIDTH).any(|x| (0..HEIGHT).any(|y| c.get(x, y) == VALID)), "validation points drawn");
    }
}
