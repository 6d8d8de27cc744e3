//! Comparisons that every test against a reference uses. Each checks lengths before it pairs
//! values up (a zip stops at the shorter side, so an empty array would pass) and fails on any
//! value or difference that is not finite: `f32::max` drops a NaN operand, and `NaN <= tol` is
//! easy to turn into a pass by negating a comparison, so a NaN map must never read as a
//! difference of 0.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

/// `ours` and `theirs` paired up, after asserting that they are equally long.
pub fn pairs<'a, A, B>(
    what: &str,
    ours: &'a [A],
    theirs: &'a [B],
) -> impl Iterator<Item = (&'a A, &'a B)> {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: {} values against the reference's {}",
        ours.len(),
        theirs.len()
    );
    ours.iter().zip(theirs)
}

/// The largest |a − b| of two equally long arrays. Panics on different lengths and on a value or
/// difference that is not finite (NaN, ±∞), naming where.
pub fn max_abs_diff<T: Copy + Into<f64>>(what: &str, ours: &[T], theirs: &[T]) -> f64 {
    let mut largest = 0f64;
    for (index, (&a, &b)) in pairs(what, ours, theirs).enumerate() {
        let (a, b) = (a.into(), b.into());
        let difference = (a - b).abs();
        assert!(
            difference.is_finite(),
            "{what}[{index}]: {a} against {b} is not a finite difference"
        );
        largest = largest.max(difference);
    }
    largest
}

/// Asserts that two equally long arrays agree to `tolerance`, relative for values above 1
/// (|a − b| ≤ tolerance · max(|b|, 1)), with no value that is not finite.
pub fn assert_close<T: Copy + Into<f64>>(what: &str, ours: &[T], theirs: &[T], tolerance: f64) {
    assert!(!theirs.is_empty(), "{what}: nothing to compare");
    for (index, (&a, &b)) in pairs(what, ours, theirs).enumerate() {
        let (a, b) = (a.into(), b.into());
        let difference = (a - b).abs();
        assert!(
            difference.is_finite() && difference <= tolerance * b.abs().max(1.0),
            "{what}[{index}]: {a} against {b} (tolerance {tolerance:e})"
        );
    }
}

/// Asserts one value agrees to `tolerance` (relative above 1), and is finite.
pub fn assert_near(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    assert_close(what, &[ours], &[theirs], tolerance);
}

/// Asserts that a PNG is a drawing: at least a tenth of it off the white background, in at least
/// `colours` colours.
pub fn assert_png_drawn(path: &std::path::Path, colours: usize) {
    let image = image::open(path).unwrap().to_rgba8();
    let area = (image.width() * image.height()) as usize;
    let inked = image
        .pixels()
        .filter(|pixel| pixel.0 != [255, 255, 255, 255])
        .count();
    assert!(
        inked * 10 >= area,
        "{}: {inked} of {area} pixels drawn",
        path.display()
    );
    let distinct: std::collections::HashSet<[u8; 4]> = image.pixels().map(|p| p.0).collect();
    assert!(
        distinct.len() >= colours,
        "{}: {} colours",
        path.display(),
        distinct.len()
    );
}

/// A fixture folder under `tests/fixtures`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixture loaded on the CPU along `path` (the tuned kernels or candle's ops).
pub fn load_fixture(
    name: &str,
    path: bertscope::model::ForwardPath,
) -> bertscope::model::LoadedModel {
    bertscope::model::LoadedModel::load_with(
        &bertscope::model::ModelSource::parse(fixture(name).to_str().expect("a UTF-8 path"))
            .expect("a folder"),
        bertscope::model::DeviceChoice::Cpu,
        path,
        &mut |_| {},
    )
    .expect("the fixture loads")
}

/// A JSON array of numbers as f32.
pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

/// The real pretrained checkpoint: `BERTSCOPE_TEST_MODEL`, else `../shared/models/all-MiniLM-L6-v2`;
/// `None` (the test is skipped) only when the variable is unset and the default is absent.
pub fn minilm_folder() -> Option<std::path::PathBuf> {
    let folder = match std::env::var_os("BERTSCOPE_TEST_MODEL") {
        Some(path) => std::path::PathBuf::from(path),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/models/all-MiniLM-L6-v2"),
    };
    if !folder.is_dir() {
        assert!(
            std::env::var_os("BERTSCOPE_TEST_MODEL").is_none(),
            "BERTSCOPE_TEST_MODEL={} is not a folder",
            folder.display()
        );
        eprintln!(
            "skipped: no MiniLM checkpoint at {} (set BERTSCOPE_TEST_MODEL)",
            folder.display()
        );
        return None;
    }
    Some(folder)
}
