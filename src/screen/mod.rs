//! The screen: screenshots read as pictures, needles cut from them, and needle
//! matching for `wait_screen` and `assert_screen`.
//!
//! Pictures are read with the `image` crate, PNG and QMP's PPM alike, never decoded by
//! hand. Matching is zero-mean normalised cross-correlation (NCC) of the needle's
//! grey levels against every position in the search area: 1.0 is identical, 0 is
//! unrelated, and a needle scores the same whatever the brightness and contrast of the
//! screen around it. The search itself is written here: `imageproc`'s
//! `match_template` computes the same score, but at every full-resolution position
//! (for a 149x223 needle in a 1024x768 screen, 476,875 positions of 33,227 pixels each,
//! 1.6e10 multiply-adds), where a `wait_screen` poll has tens of milliseconds.
//! The search is coarse to fine: screen
//! and needle are box-averaged by a power of two (up to 16, so that the needle stays at
//! least 4 pixels on its short side), every position of that coarsest level is scored,
//! and at each finer level the neighbourhoods of the best few of the level above are
//! scored again, down to full resolution. The window sums that NCC's
//! denominator needs come from integral images, so each position costs one pass over
//! the needle.
//!
//! The shipped scenarios' needles are built into the binary (see build.rs) and named
//! by their `builtin:tests/scenarios/needles/<file>` label, which [`open`] and
//! [`read_file`] accept like a path. Text on the screen is read by tesseract
//! ([`ocr`]).
//!
//! Owns: reading pictures, cutting needles, the score, OCR. Must not: take
//! screenshots (QMP does) or decide what a score means for a step (the runner does).

pub mod ocr;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The shipped needles as `(builtin: label, PNG bytes)`.
const SHIPPED_NEEDLES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/shipped_needles.rs"));

/// The labels of the shipped needles.
pub fn shipped_needles() -> impl Iterator<Item = &'static str> {
    SHIPPED_NEEDLES.iter().map(|(label, _)| *label)
}

/// A file's bytes; a `builtin:` label reads the shipped needle of that name.
pub fn read_file(path: &Path) -> std::io::Result<Cow<'static, [u8]>> {
    match path.to_str().filter(|p| p.starts_with("builtin:")) {
        Some(label) => {
            SHIPPED_NEEDLES.iter().find(|(l, _)| *l == label).map(|(_, b)| Cow::Borrowed(*b)).ok_or_else(
                || {
                    let known: Vec<&str> = shipped_needles().collect();
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no such shipped needle; the shipped ones are: {}", known.join(", ")),
                    )
                },
            )
        }
        None => std::fs::read(path).map(Cow::Owned),
    }
}

/// Reads a picture (PNG, or QMP's PPM), by path or `builtin:` label.
pub fn open(path: &Path) -> Result<image::DynamicImage, ScreenError> {
    let read = |source| ScreenError::Read { path: path.into(), source };
    let bytes = read_file(path).map_err(|e| read(image::ImageError::IoError(e)))?;
    image::load_from_memory(&bytes).map_err(read)
}

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("area {area} is not inside the {width}x{height} picture {}", path.display())]
    AreaOutside { path: PathBuf, area: Area, width: u32, height: u32 },
    #[error("area `{0}`: give it as x,y,w,h in pixels (w and h at least 1), e.g. 640,280,220,240")]
    BadArea(String),
    #[error(
        "needle {}: it is a single colour, which matches any flat part of the screen equally; cut \
         one with an edge or text in it",
        path.display()
    )]
    FlatNeedle { path: PathBuf },
    #[error("needle {} ({nw}x{nh}) is larger than the area searched ({aw}x{ah})", path.display())]
    NeedleTooLarge { path: PathBuf, nw: u32, nh: u32, aw: u32, ah: u32 },
}

/// A rectangle in screen pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Area {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Area {
    /// `x,y,w,h`.
    pub fn parse(text: &str) -> Result<Area, ScreenError> {
        let bad = || ScreenError::BadArea(text.to_string());
        let v: Vec<u32> =
            text.split(',').map(|p| p.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        match v[..] {
            [x, y, w, h] if w > 0 && h > 0 => Ok(Area { x, y, w, h }),
            _ => Err(bad()),
        }
    }

    /// `area` (the whole picture when `None`) if it lies inside a `width`x`height`
    /// picture, else the error naming the picture at `path`.
    pub fn inside(area: Option<Area>, width: u32, height: u32, path: &Path) -> Result<Area, ScreenError> {
        let area = area.unwrap_or(Area { x: 0, y: 0, w: width, h: height });
        if area.fits(width, height) {
            Ok(area)
        } else {
            Err(ScreenError::AreaOutside { path: path.into(), area, width, height })
        }
    }

    fn fits(&self, width: u32, height: u32) -> bool {
        self.x.checked_add(self.w).is_some_and(|r| r <= width)
            && self.y.checked_add(self.h).is_some_and(|b| b <= height)
    }
}

impl std::fmt::Display for Area {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.w, self.h)
    }
}

/// A picture as grey levels (0–255, as f32), row by row.
#[derive(Debug, Clone)]
pub struct Gray {
    pub width: u32,
    pub height: u32,
    pixels: Vec<f32>,
}

impl Gray {
    /// Reads a PNG or a PPM (QMP's screendump) file.
    pub fn load(path: &Path) -> Result<Gray, ScreenError> {
        Ok(Gray::from_image(&open(path)?))
    }

    pub fn from_image(img: &image::DynamicImage) -> Gray {
        let luma = img.to_luma8();
        let (width, height) = luma.dimensions();
        Gray { width, height, pixels: luma.into_raw().into_iter().map(f32::from).collect() }
    }

    /// Box average over `f`x`f` blocks (the last partial blocks dropped).
    fn shrink(&self, f: u32) -> Gray {
        if f == 1 {
            return self.clone();
        }
        let (w, h) = (self.width / f, self.height / f);
        let mut pixels = vec![0f32; (w * h) as usize];
        let n = (f * f) as f32;
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0;
                for dy in 0..f {
                    let row = ((y * f + dy) * self.width + x * f) as usize;
                    sum += self.pixels[row..row + f as usize].iter().sum::<f32>();
                }
                pixels[(y * w + x) as usize] = sum / n;
            }
        }
        Gray { width: w, height: h, pixels }
    }

    fn crop(&self, a: Area) -> Gray {
        let mut pixels = Vec::with_capacity((a.w * a.h) as usize);
        for y in a.y..a.y + a.h {
            let row = (y * self.width + a.x) as usize;
            pixels.extend_from_slice(&self.pixels[row..row + a.w as usize]);
        }
        Gray { width: a.w, height: a.h, pixels }
    }
}

/// Where a needle matched best, and how well.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Match {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// NCC, -1.0 to 1.0; 1.0 is identical.
    pub score: f32,
}

/// A needle ready to be searched for: its grey levels less their mean.
pub struct Needle {
    path: PathBuf,
    gray: Gray,
    centered: Vec<f32>,
    norm: f32,
}

impl Needle {
    pub fn load(path: &Path) -> Result<Needle, ScreenError> {
        Needle::new(Gray::load(path)?, path)
    }

    pub fn new(gray: Gray, path: &Path) -> Result<Needle, ScreenError> {
        let (centered, norm) = centered(&gray.pixels);
        // Less than one grey level of spread: nothing to match on.
        if norm / (gray.pixels.len() as f32).sqrt() < 1.0 {
            return Err(ScreenError::FlatNeedle { path: path.into() });
        }
        Ok(Needle { path: path.into(), gray, centered, norm })
    }

    pub fn width(&self) -> u32 {
        self.gray.width
    }
    pub fn height(&self) -> u32 {
        self.gray.height
    }

    /// The best match in `area` of `screen` (the whole screen when `None`).
    pub fn find(&self, screen: &Gray, area: Option<Area>) -> Result<Match, ScreenError> {
        let area = Area::inside(area, screen.width, screen.height, Path::new("(the screenshot)"))?;
        let (nw, nh) = (self.gray.width, self.gray.height);
        if nw > area.w || nh > area.h {
            return Err(ScreenError::NeedleTooLarge {
                path: self.path.clone(),
                nw,
                nh,
                aw: area.w,
                ah: area.h,
            });
        }
        let region = screen.crop(area);
        // The coarsest level: the needle's short side stays at least 4 pixels.
        let mut top = 1;
        while top < 16 && nw.min(nh) / (top * 2) >= 4 {
            top *= 2;
        }
        // Every position at the coarsest level, then at each finer level the
        // neighbourhoods of the best few of the level above.
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        let mut best = (f32::MIN, 0, 0);
        let mut f = top;
        loop {
            let (screen_f, needle_f) = (region.shrink(f), self.gray.shrink(f));
            let prepared = if f == 1 {
                Prepared { centered: self.centered.clone(), norm: self.norm, width: nw, height: nh }
            } else {
                let (c, n) = centered(&needle_f.pixels);
                Prepared { centered: c, norm: n, width: needle_f.width, height: needle_f.height }
            };
            let ii = Integral::new(&screen_f);
            let (max_x, max_y) = (screen_f.width - prepared.width, screen_f.height - prepared.height);
            let mut scored: Vec<(f32, u32, u32)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut look = |x: u32, y: u32, scored: &mut Vec<(f32, u32, u32)>| {
                if seen.insert((x, y)) {
                    scored.push((prepared.score(&screen_f, &ii, x, y), x, y));
                }
            };
            if f == top {
                for y in 0..=max_y {
                    for x in 0..=max_x {
                        look(x, y, &mut scored);
                    }
                }
            } else {
                for &(cx, cy) in &candidates {
                    let (cx, cy) = (cx * 2, cy * 2);
                    for y in cy.saturating_sub(2)..=(cy + 2).min(max_y) {
                        for x in cx.saturating_sub(2)..=(cx + 2).min(max_x) {
                            look(x, y, &mut scored);
                        }
                    }
                }
            }
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            if f == 1 {
                if let Some(&first) = scored.first() {
                    best = first;
                }
                break;
            }
            candidates = scored.into_iter().take(CANDIDATES).map(|(_, x, y)| (x, y)).collect();
            f /= 2;
        }
        Ok(Match { x: area.x + best.1, y: area.y + best.2, w: nw, h: nh, score: best.0 })
    }
}

/// Positions of one level searched again, around, at the next finer one.
const CANDIDATES: usize = 12;

/// Values less their mean, and the root of their sum of squares.
fn centered(v: &[f32]) -> (Vec<f32>, f32) {
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    let c: Vec<f32> = v.iter().map(|p| p - mean).collect();
    let norm = c.iter().map(|p| p * p).sum::<f32>().sqrt();
    (c, norm)
}

struct Prepared {
    centered: Vec<f32>,
    norm: f32,
    width: u32,
    height: u32,
}

impl Prepared {
    /// NCC of the needle with the window of `screen` at (x, y).
    fn score(&self, screen: &Gray, ii: &Integral, x: u32, y: u32) -> f32 {
        let (w, h) = (self.width, self.height);
        let mut dot = 0.0f32;
        for dy in 0..h {
            let row = ((y + dy) * screen.width + x) as usize;
            let srow = &screen.pixels[row..row + w as usize];
            let nrow = &self.centered[(dy * w) as usize..((dy + 1) * w) as usize];
            dot += srow.iter().zip(nrow).map(|(a, b)| a * b).sum::<f32>();
        }
        let n = (w * h) as f64;
        let (sum, sq) = ii.window(x, y, w, h);
        let var = (sq - sum * sum / n).max(0.0);
        if var < 1e-3 || self.norm == 0.0 {
            return 0.0;
        }
        (dot as f64 / (var.sqrt() * self.norm as f64)) as f32
    }
}

/// Summed-area tables of a picture and of its squares (f64: a 1280x800 screen of
/// 255s squared sums to 4e10).
struct Integral {
    width: usize,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Integral {
    fn new(g: &Gray) -> Integral {
        let (w, h) = (g.width as usize + 1, g.height as usize + 1);
        let (mut sum, mut sq) = (vec![0f64; w * h], vec![0f64; w * h]);
        for y in 1..h {
            let (mut rs, mut rq) = (0f64, 0f64);
            for x in 1..w {
                let p = g.pixels[(y - 1) * g.width as usize + (x - 1)] as f64;
                rs += p;
                rq += p * p;
                sum[y * w + x] = sum[(y - 1) * w + x] + rs;
                sq[y * w + x] = sq[(y - 1) * w + x] + rq;
            }
        }
        Integral { width: w, sum, sq }
    }

    fn window(&self, x: u32, y: u32, w: u32, h: u32) -> (f64, f64) {
        let (x0, y0, x1, y1) = (x as usize, y as usize, (x + w) as usize, (y + h) as usize);
        let at = |t: &[f64], x: usize, y: usize| t[y * self.width + x];
        let s = at(&self.sum, x1, y1) - at(&self.sum, x0, y1) - at(&self.sum, x1, y0) + at(&self.sum, x0, y0);
        let q = at(&self.sq, x1, y1) - at(&self.sq, x0, y1) - at(&self.sq, x1, y0) + at(&self.sq, x0, y0);
        (s, q)
    }
}

/// `bootproof needle`: cuts `area` out of `screenshot` into `output` (a PNG), in the
/// screenshot's own colours, so a needle is made from a real run's picture.
pub fn cut_needle(screenshot: &Path, area: Area, output: &Path) -> Result<(), ScreenError> {
    let img = open(screenshot)?;
    let area = Area::inside(Some(area), img.width(), img.height(), screenshot)?;
    let cut = img.crop_imm(area.x, area.y, area.w, area.h);
    // A needle of one colour would match anywhere: say so now, not at the first run.
    Needle::new(Gray::from_image(&cut), output)?;
    cut.save_with_format(output, image::ImageFormat::Png)
        .map_err(|source| ScreenError::Write { path: output.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/screens").join(name)
    }

    #[test]
    fn areas_parse_as_x_y_w_h() {
        assert_eq!(Area::parse("640, 280,220,240").unwrap(), Area { x: 640, y: 280, w: 220, h: 240 });
        for bad in ["1,2,3", "1,2,3,0", "a,b,c,d", "1,2,3,4,5", ""] {
            assert!(Area::parse(bad).is_err(), "{bad}");
        }
    }

    /// Two screenshots of SDDM's greeter from two real runs 31 minutes apart (the clock
    /// differs), and the desktop session after login.
    #[test]
    fn a_needle_cut_from_one_greeter_is_found_in_another_and_not_on_the_desktop() {
        let dir = tempfile::tempdir().unwrap();
        // The user card: avatar, name, password field.
        let card = Area { x: 693, y: 288, w: 149, h: 223 };
        let needle = dir.path().join("card.png");
        cut_needle(&fixture("greeter-1929.png"), card, &needle).unwrap();
        let needle = Needle::load(&needle).unwrap();
        let later = Gray::load(&fixture("greeter-2000.png")).unwrap();
        let m = needle.find(&later, None).unwrap();
        assert!(m.score > 0.95, "{m:?}");
        assert!((m.x as i64 - 693).abs() <= 1 && (m.y as i64 - 288).abs() <= 1, "{m:?}");
        // Restricted to an area around it, the same; an area elsewhere does not have it.
        let near = needle.find(&later, Some(Area { x: 600, y: 200, w: 400, h: 400 })).unwrap();
        assert_eq!((near.x, near.y), (m.x, m.y));
        let left = needle.find(&later, Some(Area { x: 0, y: 0, w: 600, h: 800 })).unwrap();
        assert!(left.score < 0.7, "{left:?}");
        let desktop = Gray::load(&fixture("session-2000.png")).unwrap();
        let d = needle.find(&desktop, None).unwrap();
        assert!(d.score < 0.5, "the desktop has no user card: {d:?}");
    }

    #[test]
    fn text_needles_find_their_line_and_the_clock_changes_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let prompt = dir.path().join("prompt.png");
        cut_needle(&fixture("greeter-1929.png"), Area { x: 668, y: 568, w: 372, h: 28 }, &prompt).unwrap();
        let m = Needle::load(&prompt)
            .unwrap()
            .find(&Gray::load(&fixture("greeter-2000.png")).unwrap(), None)
            .unwrap();
        assert!(m.score > 0.95 && m.x.abs_diff(668) <= 1 && m.y.abs_diff(568) <= 1, "{m:?}");
        // The clock read 19:29 in one and 20:00 in the other.
        let clock = dir.path().join("clock.png");
        cut_needle(&fixture("greeter-1929.png"), Area { x: 180, y: 335, w: 280, h: 85 }, &clock).unwrap();
        let c = Needle::load(&clock)
            .unwrap()
            .find(&Gray::load(&fixture("greeter-2000.png")).unwrap(), None)
            .unwrap();
        assert!(c.score < 0.9, "another time is another picture: {c:?}");
    }

    #[test]
    fn bad_needles_and_areas_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("n.png");
        let e = cut_needle(&fixture("greeter-1929.png"), Area { x: 1200, y: 0, w: 100, h: 10 }, &out)
            .unwrap_err();
        assert!(e.to_string().contains("is not inside the 1280x800 picture"), "{e}");
        // Black desktop background: one colour.
        let e = cut_needle(&fixture("session-2000.png"), Area { x: 300, y: 500, w: 50, h: 50 }, &out)
            .unwrap_err();
        assert!(e.to_string().contains("single colour"), "{e}");
        let e = Gray::load(&dir.path().join("missing.png")).unwrap_err();
        assert!(e.to_string().contains("missing.png"), "{e}");
    }

    #[test]
    fn a_ppm_screendump_reads_like_the_png() {
        let dir = tempfile::tempdir().unwrap();
        let png = image::open(fixture("greeter-1929.png")).unwrap();
        let ppm = dir.path().join("s.ppm");
        png.to_rgb8().save_with_format(&ppm, image::ImageFormat::Pnm).unwrap();
        let (a, b) = (Gray::load(&ppm).unwrap(), Gray::from_image(&png));
        assert_eq!((a.width, a.height), (b.width, b.height));
        assert_eq!(a.pixels, b.pixels);
    }
}
