//! Image work of still-frame shares: enhancement of a captured frame (too
//! dark, too bright, blurry), the drawing a viewer lays over it (a PNG,
//! bounded before it is decoded), and the JPEG that is shared.
//!
//! Everything here is CPU-bound and blocking: callers run it off the
//! threads that serve requests and ingest.

use ::image::imageops::{self, FilterType};
use ::image::{DynamicImage, GenericImageView, ImageFormat, ImageReader, Limits, RgbaImage};
use anyhow::Context;

/// Largest side of a drawing overlay, pixels: its size is read from the
/// PNG header before anything is decoded, so a small file that would
/// decode into a huge picture is refused at once.
pub const MAX_DRAWING_SIDE: u32 = 4096;
/// Memory a drawing may take once decoded, bytes.
const MAX_DRAWING_ALLOC: u64 =
    4 * (MAX_DRAWING_SIDE as u64) * (MAX_DRAWING_SIDE as u64) + (1 << 20);

/// Why a still could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The drawing's header announces more than [`MAX_DRAWING_SIDE`]
    /// pixels a side.
    #[error("the drawing is {width}x{height}; at most {MAX_DRAWING_SIDE} pixels a side")]
    DrawingTooLarge {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
    },
    /// The drawing is not a PNG (or not a decodable one).
    #[error("drawing is not a PNG: {0}")]
    BadDrawing(String),
    /// The frame could not be decoded or the result encoded.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A still as shared: JPEG bytes and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedImage {
    /// The JPEG.
    pub jpeg: Vec<u8>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// Auto levels: stretch each channel so the 1st and 99th luminance
/// percentiles map to 0 and 255 (fixes too dark and too bright frames), then
/// a light unsharp mask.
pub fn enhance(img: &DynamicImage) -> DynamicImage {
    let rgb = img.to_rgb8();
    let mut hist = [0u64; 256];
    for p in rgb.pixels() {
        let y = (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) / 1000;
        hist[y.min(255) as usize] += 1;
    }
    let total: u64 = hist.iter().sum();
    let pct = |q: f64| {
        let target = (total as f64 * q) as u64;
        let mut acc = 0;
        for (i, n) in hist.iter().enumerate() {
            acc += n;
            if acc > target {
                return i as f64;
            }
        }
        255.0
    };
    let (lo, hi) = (pct(0.01), pct(0.99));
    let mut out = rgb.clone();
    if hi - lo >= 8.0 {
        let scale = 255.0 / (hi - lo);
        for p in out.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = ((*c as f64 - lo) * scale).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    DynamicImage::ImageRgb8(out).unsharpen(1.0, 2)
}

/// Decodes a drawing overlay (a PNG), refusing one whose header announces
/// a picture larger than [`MAX_DRAWING_SIDE`] before decoding it, and
/// bounding what decoding may allocate.
pub fn decode_drawing(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let png = || ImageReader::with_format(std::io::Cursor::new(bytes), ImageFormat::Png);
    let bad = |e: ::image::ImageError| ImageError::BadDrawing(e.to_string());
    let (width, height) = png().into_dimensions().map_err(bad)?;
    if width > MAX_DRAWING_SIDE || height > MAX_DRAWING_SIDE {
        return Err(ImageError::DrawingTooLarge { width, height });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DRAWING_SIDE);
    limits.max_image_height = Some(MAX_DRAWING_SIDE);
    limits.max_alloc = Some(MAX_DRAWING_ALLOC);
    let mut reader = png();
    reader.limits(limits);
    reader.decode().map_err(bad)
}

/// The still as shared: the frame (a JPEG), enhanced if asked, with the
/// drawing scaled over it, as JPEG. The drawing is checked first, so a bad
/// one costs no decoding of the frame.
pub fn compose(
    frame_jpeg: &[u8],
    enhanced: bool,
    drawing_png: Option<&[u8]>,
) -> Result<ComposedImage, ImageError> {
    let drawing = drawing_png.map(decode_drawing).transpose()?;
    let original = ::image::load_from_memory_with_format(frame_jpeg, ImageFormat::Jpeg)
        .context("decoding the captured frame")?;
    let mut shared = if enhanced {
        enhance(&original)
    } else {
        original
    };
    if let Some(d) = drawing {
        let (w, h) = shared.dimensions();
        let overlay: RgbaImage = d.resize_exact(w, h, FilterType::Triangle).to_rgba8();
        let mut base = shared.to_rgba8();
        imageops::overlay(&mut base, &overlay, 0, 0);
        shared = DynamicImage::ImageRgba8(base);
    }
    let (width, height) = shared.dimensions();
    let mut out = std::io::Cursor::new(Vec::new());
    shared
        .to_rgb8()
        .write_to(&mut out, ImageFormat::Jpeg)
        .context("encoding JPEG")?;
    Ok(ComposedImage {
        jpeg: out.into_inner(),
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_luma(img: &DynamicImage) -> f64 {
        let rgb = img.to_rgb8();
        let n = rgb.pixels().len() as f64;
        rgb.pixels()
            .map(|p| (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) as f64 / 1000.0)
            .sum::<f64>()
            / n
    }

    #[test]
    fn enhance_brightens_a_dark_frame_and_darkens_a_washed_out_one() {
        let dark = DynamicImage::ImageRgb8(::image::RgbImage::from_fn(64, 36, |x, y| {
            let v = ((x + y) % 40) as u8 + 5;
            ::image::Rgb([v, v, v / 2])
        }));
        assert!(mean_luma(&enhance(&dark)) > mean_luma(&dark) + 50.0);
        let bright = DynamicImage::ImageRgb8(::image::RgbImage::from_fn(64, 36, |x, y| {
            let v = 250 - ((x * 3 + y) % 40) as u8;
            ::image::Rgb([v, v, v])
        }));
        assert!(mean_luma(&enhance(&bright)) < mean_luma(&bright) - 50.0);
        // A flat image is left alone (no division by a tiny range).
        let flat = DynamicImage::ImageRgb8(::image::RgbImage::from_pixel(
            8,
            8,
            ::image::Rgb([100, 100, 100]),
        ));
        assert!((mean_luma(&enhance(&flat)) - 100.0).abs() < 2.0);
    }

    fn encoded(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        encoded(
            DynamicImage::ImageLuma8(::image::GrayImage::new(w, h)),
            ImageFormat::Png,
        )
    }

    /// CRC-32 (ISO-HDLC), as PNG chunks carry it.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    /// A valid PNG whose header announces `w` x `h` pixels (its data is that
    /// of a 1 x 1 picture): what a decompression bomb looks like up front.
    fn png_announcing(w: u32, h: u32) -> Vec<u8> {
        let mut b = png(1, 1);
        // Signature (8), IHDR length (4), "IHDR" (4), width, height.
        b[16..20].copy_from_slice(&w.to_be_bytes());
        b[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&b[12..29]);
        b[29..33].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_drawing_announcing_a_huge_picture_is_refused_before_decoding() {
        // 11000 x 11000 pixels: 484 MB as RGBA once decoded.
        let bomb = png_announcing(11_000, 11_000);
        let e = decode_drawing(&bomb).unwrap_err();
        assert!(
            matches!(e, ImageError::DrawingTooLarge { width: 11_000, .. }),
            "{e}"
        );
        let e = decode_drawing(&png_announcing(100, MAX_DRAWING_SIDE + 1)).unwrap_err();
        assert!(matches!(e, ImageError::DrawingTooLarge { .. }), "{e}");
        assert!(decode_drawing(&png(640, 360)).is_ok());
        let e = decode_drawing(b"not a png").unwrap_err();
        assert!(matches!(e, ImageError::BadDrawing(_)), "{e}");
    }

    #[test]
    fn a_drawing_is_scaled_over_the_frame() {
        let frame = encoded(
            DynamicImage::ImageRgb8(::image::RgbImage::from_pixel(
                64,
                36,
                ::image::Rgb([0, 0, 0]),
            )),
            ImageFormat::Jpeg,
        );
        // A 2 x 2 drawing, its left half opaque white: the left half of the
        // still turns white, the right half stays black.
        let drawing = encoded(
            DynamicImage::ImageRgba8(RgbaImage::from_fn(2, 2, |x, _| {
                ::image::Rgba([255, 255, 255, if x == 0 { 255 } else { 0 }])
            })),
            ImageFormat::Png,
        );
        let still = compose(&frame, false, Some(&drawing)).unwrap();
        assert_eq!((still.width, still.height), (64, 36));
        let img = ::image::load_from_memory(&still.jpeg).unwrap().to_luma8();
        assert!(img.get_pixel(4, 18)[0] > 200, "left: drawn");
        assert!(img.get_pixel(60, 18)[0] < 50, "right: the frame");
        let e = compose(&frame, true, Some(b"not a png")).unwrap_err();
        assert!(matches!(e, ImageError::BadDrawing(_)), "{e}");
    }
}
