//! The chart font, compiled into the binary: plotters' `ab_glyph` backend
//! rasterizes it in pure Rust, so rendering needs no fontconfig or freetype
//! on the machine that runs the bench. DejaVu Sans, licence in
//! `harness/assets/LICENSE-DejaVu.txt`.

use std::io;
use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

const REGULAR: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../../assets/DejaVuSans-Bold.ttf");

/// The family name every chart asks for (plotters' `FontFamily::SansSerif`).
pub const FAMILY: &str = "sans-serif";

/// Register the embedded fonts with plotters (once per process).
pub fn ensure_registered() -> io::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, REGULAR)
            .map_err(|_| "embedded DejaVuSans.ttf is not a valid font".to_string())?;
        register_font(FAMILY, FontStyle::Bold, BOLD)
            .map_err(|_| "embedded DejaVuSans-Bold.ttf is not a valid font".to_string())
    })
    .clone()
    .map_err(io::Error::other)
}
