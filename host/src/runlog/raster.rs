//! A small RGB canvas: lines, rectangles and text in a built-in 5×7 pixel font, encoded
//! as PNG. Enough for a loss curve without a plotting stack or a font file.

/// An RGB colour.
pub type Rgb = [u8; 3];

/// An RGB image, rows top to bottom.
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Rows of a glyph, five bits each (the leftmost pixel is bit 4).
type Glyph = [u8; 7];

fn glyph(c: char) -> Option<Glyph> {
    let rows: Glyph = match c {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        '-' => [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        ' ' => [0; 7],
        'a' => [0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e],
        'c' => [0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e],
        'd' => [0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f],
        'e' => [0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e],
        'f' => [0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08],
        'g' => [0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e],
        'j' => [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'm' => [0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e],
        'p' => [0x00, 0x00, 0x1e, 0x11, 0x1e, 0x10, 0x10],
        'q' => [0x00, 0x00, 0x0d, 0x13, 0x0f, 0x01, 0x01],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e],
        't' => [0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04],
        'w' => [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a],
        'x' => [0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x0f, 0x01, 0x0e],
        'z' => [0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f],
        _ => return None,
    };
    Some(rows)
}

/// Pixels per glyph column, spacing included, at scale 1.
pub const GLYPH_ADVANCE: i64 = 6;
/// Glyph rows at scale 1.
pub const GLYPH_HEIGHT: i64 = 7;

impl Canvas {
    /// A `width` × `height` canvas filled with `background`.
    pub fn new(width: u32, height: u32, background: Rgb) -> Canvas {
        let pixels = background.iter().copied().cycle().take(width as usize * height as usize * 3).collect();
        Canvas { width, height, pixels }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Sets one pixel; points outside the canvas are ignored.
    pub fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if (0..i64::from(self.width)).contains(&x) && (0..i64::from(self.height)).contains(&y) {
            let at = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// The colour at a pixel inside the canvas.
    pub fn get(&self, x: u32, y: u32) -> Rgb {
        let at = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }

    /// A filled axis-aligned rectangle with corners `(x0, y0)` and `(x1, y1)` included.
    pub fn fill_rect(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, colour);
            }
        }
    }

    /// A straight line (Bresenham), `thickness` pixels wide.
    pub fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb, thickness: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        let half = (thickness - 1) / 2;
        loop {
            self.fill_rect((x0 - half, y0 - half), (x0 - half + thickness - 1, y0 - half + thickness - 1), colour);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Text with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide.
    /// Characters without a glyph (capitals are drawn as lower case) show as a box.
    pub fn text(&mut self, (x, y): (i64, i64), text: &str, colour: Rgb, scale: i64) {
        for (n, c) in text.chars().enumerate() {
            let left = x + n as i64 * GLYPH_ADVANCE * scale;
            let rows = glyph(c.to_ascii_lowercase()).unwrap_or([0x1f, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1f]);
            for (r, bits) in rows.iter().enumerate() {
                for b in 0..5 {
                    if bits & (0x10 >> b) != 0 {
                        let (px, py) = (left + b * scale, y + r as i64 * scale);
                        self.fill_rect((px, py), (px + scale - 1, py + scale - 1), colour);
                    }
                }
            }
        }
    }

    /// Width in pixels of `text` at `scale`.
    pub fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * GLYPH_ADVANCE * scale
    }

    /// The canvas as a PNG file.
    ///
    /// # Errors
    /// The encoder fails (it does not for a well-formed canvas).
    pub fn to_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        encode_png(&self.pixels, self.width, self.height, png::ColorType::Rgb)
    }
}

/// PNG of 8-bit pixels, `channels` per pixel, rows top to bottom.
///
/// # Errors
/// `pixels` does not hold `width × height` pixels of `colour`.
pub fn encode_png(
    pixels: &[u8],
    width: u32,
    height: u32,
    colour: png::ColorType,
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(colour);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(pixels)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_both_ends_and_text_draws_inside_its_box() {
        let mut c = Canvas::new(40, 20, [255; 3]);
        c.line((2, 3), (30, 15), [0, 0, 0], 1);
        assert_eq!(c.get(2, 3), [0, 0, 0]);
        assert_eq!(c.get(30, 15), [0, 0, 0]);
        assert_eq!(c.get(30, 3), [255; 3]);
        let mut t = Canvas::new(40, 20, [255; 3]);
        t.text((1, 1), "1.5", [9, 9, 9], 1);
        let inked: Vec<(u32, u32)> =
            (0..20).flat_map(|y| (0..40).map(move |x| (x, y))).filter(|&(x, y)| t.get(x, y) == [9, 9, 9]).collect();
        assert!(!inked.is_empty());
        let width = Canvas::text_width("1.5", 1) as u32;
        assert!(inked.iter().all(|&(x, y)| (1..1 + width).contains(&x) && (1..8).contains(&y)));
    }

    #[test]
    fn png_output_starts_with_the_signature() {
        let png = Canvas::new(3, 2, [1, 2, 3]).to_png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
