//! Captured arrays that stay where the model computed them. On a GPU, copying every attention
//! map to the host costs far more than computing it (bert-large at 512 tokens: 403 MB), so a
//! capture is kept on the device and a view copies only what it shows: one head's map, one
//! layer's mean, or every map max-pooled to thumbnail size. `dump` and exports copy once,
//! contiguously. On the CPU the "device" is the host and nothing is copied.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::error::{ModelError, Result};

/// A dense, row-major array of f32 with any number of dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Array {
    shape: Vec<usize>,
    values: KeptFloats,
}

impl F32Array {
    /// Wraps values in a shape; `None` when the sizes disagree.
    pub fn new(shape: Vec<usize>, values: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == values.len()).then_some(Self {
            shape,
            values: KeptFloats::new(values),
        })
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Every value, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The contiguous block selected by fixing the leading dimensions, e.g. `block(&[layer, head])`
    /// of an attention array is that head's `[query][key]` matrix. Panics when out of range, like
    /// slice indexing.
    pub fn block(&self, leading: &[usize]) -> &[f32] {
        let mut start = 0;
        let mut stride: usize = self.values.len();
        for (dim, &index) in leading.iter().enumerate() {
            assert!(
                index < self.shape[dim],
                "index {index} out of range for dimension {dim}"
            );
            stride /= self.shape[dim];
            start += index * stride;
        }
        &self.values[start..start + stride]
    }

    /// A single value.
    pub fn get(&self, index: &[usize]) -> f32 {
        self.block(index)[0]
    }
}

/// Floats whose memory goes back to [`recycled`] when dropped: a captured array's (its
/// values), or a head's logits (a vocabulary head's over 256 rows are 50 MB), which the next
/// pass's logits or the next run's captures then reuse instead of a new allocation cleared on
/// every pass.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KeptFloats(Vec<f32>);

impl KeptFloats {
    /// Wraps values that may come from [`recycled`] or anywhere else.
    pub fn new(values: Vec<f32>) -> Self {
        Self(values)
    }

    /// The values as a plain vector, which is then the caller's to keep.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for KeptFloats {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl Drop for KeptFloats {
    fn drop(&mut self) {
        recycled::give(std::mem::take(&mut self.0));
    }
}

/// Large captured arrays' memory, kept from one run for the next. A fresh allocation of a
/// run's attention maps (277 MB for ModernBERT-base at 512 tokens) is faulted in and zeroed by
/// the kernel page by page, a fifth of that run's time; a buffer kept from the last run of a
/// similar size is zeroed in one pass instead. At most [`recycled::KEPT_BYTES`] are kept.
pub(crate) mod recycled {
    use std::sync::Mutex;

    use rayon::prelude::{ParallelIterator, ParallelSliceMut};

    /// Arrays smaller than this are left to the allocator, which reuses them well.
    const SMALLEST_BYTES: usize = 8 << 20;
    /// The most memory kept for reuse.
    pub(crate) const KEPT_BYTES: usize = 1 << 30;

    static KEPT: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

    /// A buffer of `len` floats, zeroed when `zeroed` (else holding an earlier run's values,
    /// for a caller that writes every element): a kept one whose capacity fits (no more than
    /// twice the length, so that little is wasted), else `None`.
    pub(crate) fn take(len: usize, zeroed: bool) -> Option<Vec<f32>> {
        if len * 4 < SMALLEST_BYTES {
            return None;
        }
        let mut kept = KEPT.lock().ok()?;
        let index = kept
            .iter()
            .position(|buffer| buffer.capacity() >= len && buffer.capacity() <= 2 * len)?;
        let mut buffer = kept.swap_remove(index);
        drop(kept);
        buffer.truncate(len);
        if zeroed {
            // Zeroed by every thread, not serially by this one (a 512-token bert-base run's
            // maps are 151 MB).
            buffer
                .par_chunks_mut(1 << 16)
                .for_each(|chunk| chunk.fill(0.0));
        }
        buffer.resize(len, 0.0);
        Some(buffer)
    }

    /// Keeps a large buffer for reuse, dropping the oldest kept ones past the limit.
    pub(crate) fn give(buffer: Vec<f32>) {
        let bytes = buffer.capacity() * 4;
        if !(SMALLEST_BYTES..=KEPT_BYTES).contains(&bytes) {
            return;
        }
        let Ok(mut kept) = KEPT.lock() else {
            return;
        };
        kept.push(buffer);
        while kept
            .iter()
            .map(|buffer| buffer.capacity() * 4)
            .sum::<usize>()
            > KEPT_BYTES
        {
            kept.remove(0);
        }
    }
}

/// Serialises as nested JSON arrays following the shape.
impl Serialize for F32Array {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NestedSlice {
            shape: &self.shape,
            values: &self.values,
        }
        .serialize(serializer)
    }
}

struct NestedSlice<'a> {
    shape: &'a [usize],
    values: &'a [f32],
}

impl Serialize for NestedSlice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some((&len, inner_shape)) = self.shape.split_first() else {
            return self
                .values
                .first()
                .copied()
                .unwrap_or(0.0)
                .serialize(serializer);
        };
        let mut seq = serializer.serialize_seq(Some(len))?;
        if inner_shape.is_empty() {
            for value in self.values {
                seq.serialize_element(value)?;
            }
        } else {
            let step = inner_shape.iter().product::<usize>();
            for index in 0..len {
                seq.serialize_element(&NestedSlice {
                    shape: inner_shape,
                    values: &self.values[index * step..(index + 1) * step],
                })?;
            }
        }
        seq.end()
    }
}

/// An array a backend keeps on its device, answering the few questions views ask. Every answer
/// is row-major f32 on the host. `leading` fixes the leading dimensions, as in
/// [`F32Array::block`].
pub trait DeviceArray: Send + Sync {
    /// Which device holds it, for messages.
    fn device(&self) -> String;

    /// Copies the matrix (the last two dimensions) selected by `leading`.
    fn matrix(&self, leading: &[usize]) -> Result<Vec<f32>>;

    /// The element-wise mean of the matrices selected by `leading` (one dimension fewer than
    /// [`DeviceArray::matrix`] takes), e.g. the mean over one layer's heads.
    fn mean_matrix(&self, leading: &[usize]) -> Result<Vec<f32>>;

    /// Every matrix, zero-padded to a multiple of `factor` and max-pooled by `factor × factor`
    /// blocks, as one array `[..leading, rows / factor, cols / factor]` (sizes rounded up). Only
    /// asked of non-negative values (attention probabilities), where the padding never wins.
    fn max_pooled(&self, factor: usize) -> Result<Vec<f32>>;

    /// Everything, in one contiguous copy.
    fn to_host(&self) -> Result<Vec<f32>>;
}

/// One captured array: on the host, or on the device with the pieces views asked for cached.
/// Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct CapturedArray {
    shape: Vec<usize>,
    place: Arc<Place>,
}

enum Place {
    Host(F32Array),
    Device {
        array: Box<dyn DeviceArray>,
        /// Matrices copied so far, by their index among all matrices.
        matrices: Vec<OnceLock<Vec<f32>>>,
        /// Max-pooled matrices by pooling factor.
        pooled: Mutex<Option<(usize, Arc<Vec<f32>>)>>,
    },
}

impl CapturedArray {
    /// An array already on the host.
    pub fn host(array: F32Array) -> Self {
        Self {
            shape: array.shape().to_vec(),
            place: Arc::new(Place::Host(array)),
        }
    }

    /// An array of `shape` (at least two dimensions) still on a device.
    pub fn device(shape: Vec<usize>, array: Box<dyn DeviceArray>) -> Self {
        let matrices = leading_dims(&shape).iter().product();
        Self {
            shape,
            place: Arc::new(Place::Device {
                array,
                matrices: (0..matrices).map(|_| OnceLock::new()).collect(),
                pooled: Mutex::new(None),
            }),
        }
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether the values are on the host already (nothing to copy).
    pub fn is_on_host(&self) -> bool {
        matches!(*self.place, Place::Host(_))
    }

    /// Rows and columns of each matrix.
    fn matrix_dims(&self) -> (usize, usize) {
        match self.shape[..] {
            [.., rows, cols] => (rows, cols),
            [cols] => (1, cols),
            [] => (1, 1),
        }
    }

    /// Index of the matrix selected by `leading` among all matrices; panics when out of range,
    /// like slice indexing.
    fn matrix_index(&self, leading: &[usize]) -> usize {
        let dims = leading_dims(&self.shape);
        assert_eq!(
            leading.len(),
            dims.len(),
            "a matrix needs every leading index"
        );
        leading.iter().zip(dims).fold(0, |index, (&i, &dim)| {
            assert!(
                i < dim,
                "index {i} out of range for dimension of size {dim}"
            );
            index * dim + i
        })
    }

    /// The matrix (last two dimensions) selected by `leading`, row-major. From a device it is
    /// copied once and then served from the cache; a failed copy is logged and reads as NaN,
    /// which views draw as masked.
    pub fn matrix(&self, leading: &[usize]) -> &[f32] {
        match &*self.place {
            Place::Host(array) => array.block(leading),
            Place::Device {
                array, matrices, ..
            } => matrices[self.matrix_index(leading)].get_or_init(|| {
                let (rows, cols) = self.matrix_dims();
                array
                    .matrix(leading)
                    .and_then(|values| checked_len(values, rows * cols))
                    .unwrap_or_else(|err| failed_copy(&err, rows * cols))
            }),
        }
    }

    /// The element-wise mean of the matrices under `leading` (for attention `[layer]`: the mean
    /// over that layer's heads), computed where the array lives.
    pub fn mean_matrix(&self, leading: &[usize]) -> Vec<f32> {
        let (rows, cols) = self.matrix_dims();
        match &*self.place {
            Place::Host(array) => {
                let count = self.shape[leading.len()];
                let mut mean = vec![0f32; rows * cols];
                for member in 0..count {
                    let index: Vec<usize> = leading.iter().copied().chain([member]).collect();
                    mean.iter_mut()
                        .zip(array.block(&index))
                        .for_each(|(m, &a)| *m += a);
                }
                mean.iter_mut().for_each(|m| *m /= count as f32);
                mean
            }
            Place::Device { array, .. } => array
                .mean_matrix(leading)
                .and_then(|values| checked_len(values, rows * cols))
                .unwrap_or_else(|err| failed_copy(&err, rows * cols)),
        }
    }

    /// The matrix under `leading`, shrunk to at most `target × target` by taking the maximum of
    /// each block (see [`max_pool`]); returns the values and the new side. On a device, every
    /// matrix is pooled there in one pass and copied once, the first time one is asked for.
    pub fn max_pooled(&self, leading: &[usize], target: usize) -> (Vec<f32>, usize) {
        let (rows, cols) = self.matrix_dims();
        let side = rows.max(cols);
        let factor = pool_factor(side, target);
        match &*self.place {
            Place::Host(array) => max_pool(array.block(leading), rows, cols, factor),
            Place::Device { .. } if factor == 1 => (self.matrix(leading).to_vec(), side),
            Place::Device { array, pooled, .. } => {
                let out = side.div_ceil(factor);
                let per_matrix = rows.div_ceil(factor) * cols.div_ceil(factor);
                let all = {
                    let mut cached = pooled.lock().unwrap_or_else(PoisonError::into_inner);
                    match &*cached {
                        Some((cached_factor, values)) if *cached_factor == factor => {
                            Arc::clone(values)
                        }
                        _ => {
                            let matrices = leading_dims(&self.shape).iter().product::<usize>();
                            let values = array
                                .max_pooled(factor)
                                .and_then(|values| checked_len(values, matrices * per_matrix))
                                .unwrap_or_else(|err| failed_copy(&err, matrices * per_matrix));
                            let values = Arc::new(values);
                            *cached = Some((factor, Arc::clone(&values)));
                            values
                        }
                    }
                };
                let start = self.matrix_index(leading) * per_matrix;
                (all[start..start + per_matrix].to_vec(), out)
            }
        }
    }

    /// Every value on the host: borrowed when it is there already, otherwise copied from the
    /// device in one contiguous transfer (not cached: exports ask once).
    pub fn to_host(&self) -> Result<Cow<'_, F32Array>> {
        match &*self.place {
            Place::Host(array) => Ok(Cow::Borrowed(array)),
            Place::Device { array, .. } => {
                let values = array.to_host()?;
                F32Array::new(self.shape.clone(), values)
                    .map(Cow::Owned)
                    .ok_or_else(|| {
                        ModelError::Compute(format!(
                            "{} returned the wrong number of values",
                            array.device()
                        ))
                    })
            }
        }
    }
}

impl From<F32Array> for CapturedArray {
    fn from(array: F32Array) -> Self {
        Self::host(array)
    }
}

impl fmt::Debug for CapturedArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &*self.place {
            Place::Host(_) => "host".to_owned(),
            Place::Device { array, .. } => array.device(),
        };
        f.debug_struct("CapturedArray")
            .field("shape", &self.shape)
            .field("on", &place)
            .finish()
    }
}

/// Equal shapes and values (device arrays are copied to compare).
impl PartialEq for CapturedArray {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape
            && match (self.to_host(), other.to_host()) {
                (Ok(a), Ok(b)) => a.values() == b.values(),
                _ => false,
            }
    }
}

/// The dimensions before the matrices (the last two): `[layer, head]` of attention.
fn leading_dims(shape: &[usize]) -> &[usize] {
    &shape[..shape.len().saturating_sub(2)]
}

fn checked_len(values: Vec<f32>, expected: usize) -> Result<Vec<f32>> {
    if values.len() == expected {
        Ok(values)
    } else {
        Err(ModelError::Compute(format!(
            "the device returned {} values where {expected} were expected",
            values.len()
        )))
    }
}

fn failed_copy(err: &ModelError, len: usize) -> Vec<f32> {
    tracing::error!("copying a capture from the device failed: {err}");
    vec![f32::NAN; len]
}

/// The pooling factor that brings `side` down to at most `target` (1 when it fits already).
pub fn pool_factor(side: usize, target: usize) -> usize {
    if side <= target || target == 0 {
        1
    } else {
        side.div_ceil(target)
    }
}

/// Shrinks a row-major `rows × cols` matrix by taking the maximum of each `factor × factor`
/// block (the last blocks may be partial), so that single strong weights stay visible in
/// thumbnails. NaN (masked) cells are left out; a block of masked cells only stays NaN. Returns
/// the pooled values and the pooled side (of the larger dimension).
pub fn max_pool(values: &[f32], rows: usize, cols: usize, factor: usize) -> (Vec<f32>, usize) {
    if factor <= 1 {
        return (values.to_vec(), rows.max(cols));
    }
    let out_rows = rows.div_ceil(factor);
    let out_cols = cols.div_ceil(factor);
    // f32::max ignores a NaN operand, so masked cells never win and all-masked blocks stay NaN.
    let mut pooled = vec![f32::NAN; out_rows * out_cols];
    for row in 0..rows {
        let out_row = &mut pooled[(row / factor) * out_cols..][..out_cols];
        for (col, &value) in values[row * cols..][..cols].iter().enumerate() {
            let cell = &mut out_row[col / factor];
            *cell = cell.max(value);
        }
    }
    (pooled, out_rows.max(out_cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host array posing as a device one, to test the device paths without a GPU.
    struct FakeDevice(F32Array);

    impl DeviceArray for FakeDevice {
        fn device(&self) -> String {
            "fake device".to_owned()
        }
        fn matrix(&self, leading: &[usize]) -> Result<Vec<f32>> {
            Ok(self.0.block(leading).to_vec())
        }
        fn mean_matrix(&self, leading: &[usize]) -> Result<Vec<f32>> {
            Ok(CapturedArray::host(self.0.clone()).mean_matrix(leading))
        }
        fn max_pooled(&self, factor: usize) -> Result<Vec<f32>> {
            let shape = self.0.shape();
            let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            Ok(self
                .0
                .values()
                .chunks(rows * cols)
                .flat_map(|matrix| max_pool(matrix, rows, cols, factor).0)
                .collect())
        }
        fn to_host(&self) -> Result<Vec<f32>> {
            Ok(self.0.values().to_vec())
        }
    }

    fn sample() -> F32Array {
        F32Array::new(vec![2, 3, 5, 5], (0..150).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn device_and_host_arrays_answer_alike() {
        let host = CapturedArray::host(sample());
        let device = CapturedArray::device(vec![2, 3, 5, 5], Box::new(FakeDevice(sample())));
        assert!(host.is_on_host() && !device.is_on_host());
        assert_eq!(host.matrix(&[1, 2]), device.matrix(&[1, 2]));
        assert_eq!(host.matrix(&[1, 2])[0], 125.0);
        assert_eq!(host.mean_matrix(&[1]), device.mean_matrix(&[1]));
        assert_eq!(host.mean_matrix(&[1])[0], 100.0);
        assert_eq!(host.max_pooled(&[0, 1], 2), device.max_pooled(&[0, 1], 2));
        assert_eq!(host.max_pooled(&[0, 1], 8), device.max_pooled(&[0, 1], 8));
        assert_eq!(host, device);
        assert_eq!(device.to_host().unwrap().values(), sample().values());
    }

    #[test]
    fn pooling_keeps_the_strongest_weight_and_leaves_masked_cells_out() {
        let nan = f32::NAN;
        #[rustfmt::skip]
        let values = [
            0.1, 0.2, nan, nan,
            0.0, 0.9, nan, nan,
            0.3, nan, 0.4, 0.0,
            nan, nan, 0.0, 0.5,
        ];
        let (pooled, side) = max_pool(&values, 4, 4, 2);
        assert_eq!(side, 2);
        assert_eq!(pooled[0], 0.9);
        assert!(pooled[1].is_nan());
        assert_eq!(pooled[2..], [0.3, 0.5]);
        let (pooled, side) = max_pool(&values[..12], 3, 4, 3);
        assert_eq!((pooled, side), (vec![0.9, 0.0], 2));
        assert_eq!(pool_factor(512, 96), 6);
        assert_eq!(pool_factor(90, 96), 1);
    }
}
