//! What several fuzz targets share.

use sharecast_formats::attributes::VideoAttributes;

/// Takes `a`'s frame rates (its own and its renditions') from `b` where
/// `close` says they are the same rate: for formats that carry a rate less
/// precisely than an `f64`.
pub fn frame_rates_from(a: &mut VideoAttributes, b: &VideoAttributes, close: fn(f64, f64) -> bool) {
    if close(a.frame_rate, b.frame_rate) {
        a.frame_rate = b.frame_rate;
    }
    for (ra, rb) in a.renditions.iter_mut().zip(&b.renditions) {
        if close(ra.frame_rate, rb.frame_rate) {
            ra.frame_rate = rb.frame_rate;
        }
    }
}
