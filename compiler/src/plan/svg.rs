//! Draws a plan as SVG: time runs left to right, offsets bottom to top, one labelled box per
//! buffer (hover for its id, lifetime, offset and size), and a line at the lower bound.

use std::fmt::Write;

use super::{Buffer, Plan};

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 700.0;
const MARGIN: f64 = 40.0;

/// An SVG document showing `plan` for `buffers`.
pub fn render_svg(buffers: &[Buffer], plan: &Plan) -> String {
    let shown: Vec<usize> = (0..buffers.len()).filter(|&i| buffers[i].occupies()).collect();
    let t0 = shown.iter().map(|&i| buffers[i].lower).min().unwrap_or(0);
    let t1 = shown.iter().map(|&i| buffers[i].upper).max().unwrap_or(1).max(t0 + 1);
    let (sx, sy) = ((WIDTH - 2.0 * MARGIN) / (t1 - t0) as f64, (HEIGHT - 2.0 * MARGIN) / plan.arena.max(1) as f64);
    let x = |t: u64| MARGIN + (t - t0) as f64 * sx;
    let y = |offset: u64| HEIGHT - MARGIN - offset as f64 * sy;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="monospace" font-size="10">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (n, &i) in shown.iter().enumerate() {
        let (b, offset) = (&buffers[i], plan.offsets.get(i).copied().unwrap_or(0));
        let (left, right, top, bottom) = (x(b.lower), x(b.upper), y(offset + b.size), y(offset));
        let (w, h) = (right - left, bottom - top);
        let hue = (n * 137) % 360;
        let id = escape(&b.id);
        let _ = writeln!(
            out,
            r#"<rect x="{left:.2}" y="{top:.2}" width="{w:.2}" height="{h:.2}" fill="hsl({hue},60%,75%)" stroke="black" stroke-width="0.5"><title>{id}: [{}, {}) offset {offset} size {}</title></rect>"#,
            b.lower, b.upper, b.size
        );
        if w >= 6.0 * id.len() as f64 + 4.0 && h >= 11.0 {
            let _ = writeln!(
                out,
                r#"<text x="{:.2}" y="{:.2}" text-anchor="middle">{id}</text>"#,
                left + w / 2.0,
                top + h / 2.0 + 3.5
            );
        }
    }
    let lb = super::lower_bound(buffers);
    let (right, lb_y) = (WIDTH - MARGIN, y(lb));
    let _ = writeln!(
        out,
        r#"<line x1="{MARGIN}" x2="{right}" y1="{lb_y:.2}" y2="{lb_y:.2}" stroke="red" stroke-dasharray="4 3"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN}" y="{}">arena {} bytes, lower bound {lb} (dashed), time {t0}..{t1}</text>"#,
        MARGIN - 12.0,
        plan.arena
    );
    out.push_str("</svg>\n");
    out
}

/// Escapes text for an XML text node or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
