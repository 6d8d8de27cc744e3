//! The numeric kernels of the CPU forward: matrix products through the `gemm` crate, and the
//! element-wise passes (activations, softmax, LayerNorm), written branch-free and compiled for
//! AVX2 and AVX-512 as well as the baseline so that they vectorise where the CPU allows.

use rayon::prelude::{
    IndexedParallelIterator, IntoParallelIterator, ParallelIterator, ParallelSlice,
    ParallelSliceMut,
};

use super::isa::dispatched;
use crate::model::config::{Activation, KeyWindow};

/// `W·Xᵀ + b (+ residual)` with `w` `[outputs, inputs]` and `xt` `[inputs, columns]`, both
/// row-major; `residual` is `[outputs, columns]`. Bias and residual seed the output, which the
/// product then accumulates onto, so the residual sum costs no extra pass.
pub(super) fn dense(
    w: &[f32],
    bias: Option<&[f32]>,
    outputs: usize,
    inputs: usize,
    xt: &[f32],
    columns: usize,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(w.len(), outputs * inputs);
    assert!(bias.is_none_or(|bias| bias.len() == outputs));
    assert_eq!(xt.len(), inputs * columns);
    assert!(residual.is_none_or(|residual| residual.len() == outputs * columns));
    // The residual, then the bias, then the product: the order of the sums in every path.
    let seed = |first_output: usize, dst: &mut [f32]| {
        if let Some(residual) = residual {
            dst.copy_from_slice(&residual[first_output * columns..][..dst.len()]);
        }
        if let Some(bias) = bias {
            for (row, &b) in dst.chunks_exact_mut(columns).zip(&bias[first_output..]) {
                row.iter_mut().for_each(|x| *x += b);
            }
        }
    };
    let seeded = residual.is_some() || bias.is_some();
    if columns == 1 {
        let mut out = vec![0f32; outputs];
        seed(0, &mut out);
        gemv(w, inputs, xt, &mut out);
        return out;
    }
    // Each thread takes its own band of outputs, one single-threaded product apiece, and seeds
    // it itself: at a sentence's width (128 tokens) this ran bert-base's forward ~10% faster
    // and SmolLM2's ~4% than the gemm crate splitting each product itself, and as fast at 512
    // tokens. A band is never zeroed first (1–3% of a forward or of integrated gradients went
    // to `memset`): its seed writes it whole, or the product, which then does not read it, does.
    let band = outputs.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let fill = |index: usize, dst: &mut [std::mem::MaybeUninit<f32>]| {
        let first_output = index * band;
        let rows = dst.len() / columns;
        if let Some(residual) = residual {
            for (dst, &r) in dst.iter_mut().zip(&residual[first_output * columns..]) {
                dst.write(r);
            }
        }
        if let Some(bias) = bias {
            for (row, &b) in dst.chunks_exact_mut(columns).zip(&bias[first_output..]) {
                for x in row {
                    let value = if residual.is_some() {
                        // SAFETY: written just above, from the residual.
                        (unsafe { x.assume_init_read() }) + b
                    } else {
                        b
                    };
                    x.write(value);
                }
            }
        }
        let product = MatMul {
            m: rows,
            n: columns,
            k: inputs,
            lhs: Strided::row_major(&w[first_output * inputs..], inputs),
            rhs: Strided::row_major(xt, columns),
        };
        // SAFETY: the band is `rows × columns`, its rows `columns` apart; seeded, every
        // element was written above; unseeded, the product writes every one without reading.
        unsafe { product.run_raw(dst.as_mut_ptr().cast(), dst.len(), columns, 1.0, seeded) };
    };
    // SAFETY: `fill` writes every element of its chunk (above).
    unsafe { written_in_parallel(outputs * columns, band * columns, fill) }
}

/// `len` floats, written chunk by chunk (`fill(chunk index, chunk)`) in parallel, never
/// zeroed.
///
/// # Safety
/// `fill` writes every element of the chunk it is given.
unsafe fn written_in_parallel(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(index, part)| fill(index, part));
    // SAFETY: the chunks cover `0..len`, and the caller's `fill` wrote every element.
    unsafe { out.set_len(len) };
    out
}

/// `len` floats, zeroed and then filled chunk by chunk (`fill(chunk index, chunk)`) in
/// parallel: each thread zeroes the chunk it fills, while the cache line is its own, instead of
/// the allocating thread zeroing every buffer alone first (glibc's `calloc` clears reused heap
/// memory serially: 4% of integrated gradients' time).
pub(in crate::model::backend) fn filled_in_parallel(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(index, part)| {
            part.iter_mut().for_each(|x| {
                x.write(0.0);
            });
            // SAFETY: every element of `part` was initialised just above, and `MaybeUninit<f32>`
            // has the layout of `f32`.
            let part = unsafe { &mut *(std::ptr::from_mut(part) as *mut [f32]) };
            fill(index, part);
        });
    // SAFETY: the chunks cover `0..len`, and every element was initialised above.
    unsafe { out.set_len(len) };
    out
}

/// `f` over ranges of columns in parallel, its per-column results concatenated in column
/// order: each column's arithmetic is what one pass over every column does, so the results
/// are the same to the bit.
fn by_column_ranges<T: Send>(
    columns: usize,
    f: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync,
) -> Vec<T> {
    let chunk = columns
        .div_ceil(rayon::current_num_threads().max(1) * 2)
        .max(32);
    let starts: Vec<usize> = (0..columns).step_by(chunk).collect();
    let parts: Vec<Vec<T>> = starts
        .into_par_iter()
        .map(|start| f(start..(start + chunk).min(columns)))
        .collect();
    parts.into_iter().flatten().collect()
}

/// `xt += residual`, in parallel chunks.
fn add_residual(xt: &mut [f32], residual: &[f32]) {
    assert_eq!(xt.len(), residual.len());
    xt.par_chunks_mut(16384)
        .zip(residual.par_chunks(16384))
        .for_each(|(x, r)| x.iter_mut().zip(r).for_each(|(x, r)| *x += r));
}

/// `X·Wᵀ (+ b)` row-major (`[columns, outputs]`) for feature-major `xt` (`[inputs, columns]`)
/// and `w` `[outputs, inputs]`: a vocabulary head's logits in the layout their rows are read
/// in. Each task multiplies a tile of outputs as [`dense`] does, `W·Xᵀ` with the weights read
/// where they lie, and transposes the tile, still in cache, into its columns of the output.
/// Multiplying into the row-major layout directly made the `gemm` crate repack the whole
/// vocabulary matrix on every call (113 MB for SmolLM2's): 134 GFLOP/s against 203 for the
/// layers' products, and 7% of SmolLM2's forward spent packing.
pub(super) fn dense_rows(
    w: &[f32],
    bias: Option<&[f32]>,
    outputs: usize,
    inputs: usize,
    xt: &[f32],
    columns: usize,
) -> Vec<f32> {
    /// Outputs per tile: 256 outputs of 128 tokens are 128 KiB, which stay in L2 from the
    /// product to the transpose.
    const TILE: usize = 256;
    assert_eq!(w.len(), outputs * inputs);
    assert_eq!(xt.len(), inputs * columns);
    assert!(bias.is_none_or(|bias| bias.len() == outputs));
    if columns == 1 {
        // One row is one column: a generation step's head.
        let mut out = bias.map_or_else(|| vec![0f32; outputs], <[f32]>::to_vec);
        gemv(w, inputs, xt, &mut out);
        return out;
    }
    // Every element is written below (each tile's block transpose covers its outputs at every
    // column), so the logits may hold an earlier pass's values: memory kept from it where there
    // is some, as the captures are (a vocabulary's logits at 256 rows are 50 MB, otherwise
    // allocated and cleared again on every pass), else fresh memory in huge pages.
    let mut out = capture_buffer(outputs * columns, false);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..outputs.div_ceil(TILE)).into_par_iter().for_each_init(
        Vec::new,
        |tile: &mut Vec<f32>, index| {
            let out_ptr = &out_ptr;
            let start = index * TILE;
            let width = TILE.min(outputs - start);
            tile.clear();
            tile.resize(width * columns, 0.0);
            // The bias, then the product: the order of the sums in every path.
            if let Some(bias) = bias {
                for (row, &b) in tile.chunks_exact_mut(columns).zip(&bias[start..]) {
                    row.fill(b);
                }
            }
            MatMul {
                m: width,
                n: columns,
                k: inputs,
                lhs: Strided::row_major(&w[start * inputs..], inputs),
                rhs: Strided::row_major(xt, columns),
            }
            .run(tile, columns, 1.0, bias.is_some(), false);
            // In 16 × 16 blocks: each block reads 16 cache lines of the tile and writes 16
            // of the output; a column at a time re-read the whole tile from L2 per column.
            for first_column in (0..columns).step_by(16) {
                let column_end = (first_column + 16).min(columns);
                for first_offset in (0..width).step_by(16) {
                    let offset_end = (first_offset + 16).min(width);
                    for column in first_column..column_end {
                        for offset in first_offset..offset_end {
                            // SAFETY: `column·outputs + start + offset` lies inside `out`
                            // (`offset < width ≤ outputs − start`), and the tiles' output
                            // ranges are disjoint, so no two tasks write one element.
                            unsafe {
                                out_ptr
                                    .0
                                    .add(column * outputs + start + offset)
                                    .write(tile[offset * columns + column]);
                            }
                        }
                    }
                }
            }
        },
    );
    out
}

/// A pointer shared by tasks that write disjoint parts of one array.
struct SendPtr(*mut f32);
// SAFETY: only used to hand disjoint regions of one array to parallel tasks.
unsafe impl Sync for SendPtr {}

/// `out += W·x` for one column `x` (a generation step): each output is one row of `W` against
/// `x`, rows shared among the threads. The `gemm` crate's kernels pack their operands for
/// blocks of columns, which for a single one cost more than the product; this streams `W` once,
/// which is all a matrix–vector product can do (measured on GPT-2's step, 124M weights: about
/// half the step's time saved on two AVX-512 cores).
fn gemv(w: &[f32], inputs: usize, x: &[f32], out: &mut [f32]) {
    /// Rows per task: 64 rows of 768 inputs are 192 KiB, enough to amortise a task.
    const ROWS: usize = 64;
    out.par_chunks_mut(ROWS)
        .zip(w.par_chunks(ROWS * inputs))
        .for_each(|(out, rows)| {
            rows_dot(rows, inputs, x, out);
        });
}

dispatched! {
    /// Four rows of `W` against `x` at once, sharing each load of `x`, each in 16 lanes of fused
    /// multiply-adds summed pairwise at the end: a single row with one long reduction spent more
    /// time summing its lanes than reading its weights.
    fn rows_dot(rows: &[f32], inputs: usize, x: &[f32], out: &mut [f32]) {
        const LANES: usize = 16;
        let body = inputs - inputs % LANES;
        let mut quads = rows.chunks_exact(4 * inputs);
        let mut outs = out.chunks_exact_mut(4);
        for (quad, y) in (&mut quads).zip(&mut outs) {
            let (r0, rest) = quad.split_at(inputs);
            let (r1, rest) = rest.split_at(inputs);
            let (r2, r3) = rest.split_at(inputs);
            let mut acc = [[0f32; LANES]; 4];
            for start in (0..body).step_by(LANES) {
                let xs = &x[start..start + LANES];
                for (acc, row) in acc.iter_mut().zip([r0, r1, r2, r3]) {
                    let ws = &row[start..start + LANES];
                    for ((sum, &w), &v) in acc.iter_mut().zip(ws).zip(xs) {
                        *sum = w.mul_add(v, *sum);
                    }
                }
            }
            for ((y, acc), row) in y.iter_mut().zip(acc).zip([r0, r1, r2, r3]) {
                *y += lanes_sum(acc) + tail_dot(&row[body..], &x[body..]);
            }
        }
        for (row, y) in quads
            .remainder()
            .chunks_exact(inputs)
            .zip(outs.into_remainder())
        {
            *y += lanes_dot(row, x);
        }
    }
}

/// The sum of 16 lanes, pairwise.
#[inline(always)]
fn lanes_sum(mut lanes: [f32; 16]) -> f32 {
    for width in [8, 4, 2, 1] {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

/// `a·b`, in 16 lanes of fused multiply-adds summed pairwise at the end; inlined into the
/// dispatched kernels, so that it runs at their level.
#[inline(always)]
fn lanes_dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let len = a.len().min(b.len());
    let body = len - len % LANES;
    let mut acc = [0f32; LANES];
    for (xs, ys) in a[..body]
        .chunks_exact(LANES)
        .zip(b[..body].chunks_exact(LANES))
    {
        for ((sum, &x), &y) in acc.iter_mut().zip(xs).zip(ys) {
            *sum = x.mul_add(y, *sum);
        }
    }
    lanes_sum(acc) + tail_dot(&a[body..len], &b[body..len])
}

dispatched! {
    /// `a·b` ([`lanes_dot`]).
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        lanes_dot(a, b)
    }
}

dispatched! {
    /// `y += a·x`.
    pub(super) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = a.mul_add(x, *y));
    }
}

/// A plain dot product, for what is left over.
#[inline(always)]
fn tail_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A matrix operand: element `(r, c)` is at `r·row_stride + c·col_stride`.
#[derive(Clone, Copy)]
pub(in crate::model::backend) struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    pub(in crate::model::backend) fn row_major(data: &'a [f32], columns: usize) -> Self {
        Self {
            data,
            row_stride: columns,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `columns` columns.
    pub(in crate::model::backend) fn transposed(data: &'a [f32], columns: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: columns,
        }
    }

    /// Index of the last element of a `rows × cols` view, which must lie inside `data`.
    fn check(&self, rows: usize, cols: usize) {
        let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
        assert!(last < self.data.len(), "matrix view out of bounds");
    }
}

/// `dst (m×n, row-major with row stride dst_row_stride) (+)= scale · lhs (m×k) · rhs (k×n)`.
pub(in crate::model::backend) struct MatMul<'a> {
    pub(in crate::model::backend) m: usize,
    pub(in crate::model::backend) n: usize,
    pub(in crate::model::backend) k: usize,
    pub(in crate::model::backend) lhs: Strided<'a>,
    pub(in crate::model::backend) rhs: Strided<'a>,
}

impl MatMul<'_> {
    pub(in crate::model::backend) fn run(
        &self,
        dst: &mut [f32],
        dst_row_stride: usize,
        scale: f32,
        accumulate: bool,
        parallel: bool,
    ) {
        let parallelism = if parallel && rayon::current_num_threads() > 1 {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `dst` is an initialised slice of that length, borrowed mutably.
        unsafe {
            self.gemm(
                dst.as_mut_ptr(),
                dst.len(),
                dst_row_stride,
                scale,
                accumulate,
                parallelism,
            );
        }
    }

    /// [`run`](Self::run) on one thread into `dst_len` floats at `dst`.
    ///
    /// # Safety
    /// `dst` points to `dst_len` writable floats that alias neither operand, initialised
    /// wherever the product reads them (everywhere in its view when `accumulate`, nowhere
    /// otherwise).
    pub(in crate::model::backend) unsafe fn run_raw(
        &self,
        dst: *mut f32,
        dst_len: usize,
        dst_row_stride: usize,
        scale: f32,
        accumulate: bool,
    ) {
        // SAFETY: the caller's.
        unsafe {
            self.gemm(
                dst,
                dst_len,
                dst_row_stride,
                scale,
                accumulate,
                gemm::Parallelism::None,
            );
        }
    }

    /// # Safety
    /// As [`run_raw`](Self::run_raw).
    unsafe fn gemm(
        &self,
        dst: *mut f32,
        dst_len: usize,
        dst_row_stride: usize,
        scale: f32,
        accumulate: bool,
        parallelism: gemm::Parallelism,
    ) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        self.lhs.check(self.m, self.k.max(1));
        self.rhs.check(self.k.max(1), self.n);
        assert!(
            (self.m - 1) * dst_row_stride + self.n <= dst_len,
            "destination out of bounds"
        );
        assert!(self.n <= dst_row_stride);
        // SAFETY: the asserts above keep every element gemm touches inside the three buffers;
        // the caller vouches that `dst` aliases neither operand and is initialised where read.
        unsafe {
            super::isa::gemm(
                self.m,
                self.n,
                self.k,
                dst,
                (1, dst_row_stride as isize),
                accumulate,
                (
                    self.lhs.data.as_ptr(),
                    self.lhs.col_stride as isize,
                    self.lhs.row_stride as isize,
                ),
                (
                    self.rhs.data.as_ptr(),
                    self.rhs.col_stride as isize,
                    self.rhs.row_stride as isize,
                ),
                (1.0, scale),
                parallelism,
            );
        }
    }
}

/// The chunk the element-wise kernels hand each task.
const ELEMENTWISE_CHUNK: usize = 4096;

/// Applies the feed-forward activation in place, in parallel chunks.
pub(super) fn activate(values: &mut [f32], activation: Activation) {
    values
        .par_chunks_mut(ELEMENTWISE_CHUNK)
        .for_each(|chunk| activate_chunk(chunk, activation));
}

fn activate_chunk(chunk: &mut [f32], activation: Activation) {
    match activation {
        Activation::GeluErf => gelu_erf_slice(chunk),
        Activation::GeluTanh => gelu_tanh_slice(chunk),
        Activation::Relu => chunk.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Tanh => chunk.iter_mut().for_each(|x| *x = x.tanh()),
        Activation::Silu => silu_slice(chunk),
    }
}

/// The feed-forward activation of `values`, copied and activated in one parallel pass. The
/// erf GELU (BERT's) reads its input and writes its output in the same loop: copying first
/// made the copy's reads from memory about 1% of integrated gradients' time (`perf`), as much
/// as the GELU itself.
pub(in crate::model::backend) fn activated(values: &[f32], activation: Activation) -> Vec<f32> {
    filled_in_parallel(values.len(), ELEMENTWISE_CHUNK, |index, chunk| {
        let values = &values[index * ELEMENTWISE_CHUNK..][..chunk.len()];
        if activation == Activation::GeluErf {
            gelu_erf_into(values, chunk);
        } else {
            chunk.copy_from_slice(values);
            activate_chunk(chunk, activation);
        }
    })
}

/// A gated feed-forward block's middle, `act(gate) · up`, from its first layer's output
/// (feature-major: the gate's `inner` rows, then the up projection's).
pub(super) fn gate(stacked: &[f32], activation: Activation) -> Vec<f32> {
    let (gates, up) = stacked.split_at(stacked.len() / 2);
    filled_in_parallel(gates.len(), ELEMENTWISE_CHUNK, |index, chunk| {
        let at = index * ELEMENTWISE_CHUNK;
        chunk.copy_from_slice(&gates[at..][..chunk.len()]);
        activate_chunk(chunk, activation);
        chunk.iter_mut().zip(&up[at..]).for_each(|(o, &u)| *o *= u);
    })
}

/// Soft-capping in place, `c·tanh(x/c)`, in parallel chunks (a vocabulary head's logits).
pub(super) fn soft_cap(values: &mut [f32], cap: f32) {
    values
        .par_chunks_mut(4096)
        .for_each(|chunk| chunk.iter_mut().for_each(|x| *x = capped(*x, cap)));
}

/// `c·tanh(x/c)`, in transformers' order of operations.
#[inline]
fn capped(x: f32, cap: f32) -> f32 {
    (x / cap).tanh() * cap
}

/// The gradient with respect to a gated block's first-layer output (`stacked`: the gate's rows,
/// then the up projection's) from the gradient of `act(gate) · up`.
pub(super) fn gate_backward(grad: &[f32], stacked: &[f32], activation: Activation) -> Vec<f32> {
    let (gates, up) = stacked.split_at(stacked.len() / 2);
    // d gate = grad · up · act'(gate)
    let mut d_gate: Vec<f32> = grad.iter().zip(up).map(|(g, u)| g * u).collect();
    activation_backward(&mut d_gate, gates, activation);
    // d up = grad · act(gate)
    let mut d_up = gates.to_vec();
    activate(&mut d_up, activation);
    d_up.iter_mut().zip(grad).for_each(|(a, g)| *a *= g);
    d_gate.extend(d_up);
    d_gate
}

dispatched! {
    /// `silu(x) = x·σ(x) = x / (1 + e^{−x})`, as PyTorch computes it.
    fn silu_slice(values: &mut [f32]) {
        for x in values.iter_mut() {
            *x /= 1.0 + exp(-*x);
        }
    }
}

/// Rotary embedding of one head's vectors, feature-major `[head_dim, tokens]`, in place:
/// dimension `f < d/2` and `f + d/2` of token `t` turn by the angle whose `cos` and `sin` are at
/// `[t, f]` of the tables, as transformers' `q·cos + rotate_half(q)·sin` computes it.
pub(super) fn rotate_columns(block: &mut [f32], tokens: usize, cos: &[f32], sin: &[f32]) {
    let half = block.len() / tokens / 2;
    let (low, high) = block.split_at_mut(half * tokens);
    for f in 0..half {
        let low = &mut low[f * tokens..][..tokens];
        let high = &mut high[f * tokens..][..tokens];
        for t in 0..tokens {
            let (c, s) = (cos[t * half + f], sin[t * half + f]);
            let (a, b) = (low[t], high[t]);
            low[t] = a * c + -b * s;
            high[t] = b * c + a * s;
        }
    }
}

/// `e^x`, branch-free so that loops over it vectorise: Cody–Waite range reduction to
/// `r ∈ [-ln2/2, ln2/2]`, a degree-6 Taylor polynomial (truncation below 1.2e-7 relative) and
/// the power of two built in the exponent bits. Inputs are clamped to f32's finite range.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n as an integer, read from the low mantissa bits of `shifted`: integer arithmetic that
    // vectorises, where `n as i32` (saturating, NaN-checked) is scalar code per element.
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    p * f32::from_bits(((n_bits + 127) << 23) as u32)
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7 in exact arithmetic,
/// 3e-7 in f32), the formula PyTorch's vectorised CPU kernels use.
#[inline(always)]
fn erf(x: f32) -> f32 {
    erf_given_gaussian(x, exp(-x * x))
}

/// [`erf`] from `e^{-x²}`, which the erf GELU's derivative needs anyway for its density term:
/// one `exp` per element instead of two.
#[inline(always)]
fn erf_given_gaussian(x: f32, gaussian: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * gaussian).copysign(x)
}

/// transformers' `gelu`: `x·Φ(x)` with the error function; inlined into the dispatched
/// kernels, so that it runs at their level.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

dispatched! {
    /// [`gelu_erf`] of each value, in place.
    fn gelu_erf_slice(values: &mut [f32]) {
        for x in values.iter_mut() {
            *x = gelu_erf(*x);
        }
    }
}

dispatched! {
    /// [`gelu_erf`] of `values` into `out`.
    fn gelu_erf_into(values: &[f32], out: &mut [f32]) {
        for (y, &x) in out.iter_mut().zip(values) {
            *y = gelu_erf(x);
        }
    }
}

dispatched! {
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation, with `tanh(y) = 1 − 2/(e^{2y}+1)`.
    fn gelu_tanh_slice(values: &mut [f32]) {
        let sqrt_2_over_pi = (2.0 / std::f32::consts::PI).sqrt();
        for x in values.iter_mut() {
            let inner = sqrt_2_over_pi * (*x + 0.044715 * *x * *x * *x);
            let tanh = 1.0 - 2.0 / (exp(2.0 * inner) + 1.0);
            *x = 0.5 * *x * (1.0 + tanh);
        }
    }
}

/// A buffer of `len` floats for a large captured array: one kept from an earlier run's dropped
/// capture when one fits, else fresh memory, which is faulted in one page at a time on first
/// write; asking for transparent huge pages (2 MiB) turns the ~37,000 faults of a 512-token
/// bert-base run's attention maps (151 MB) into ~75. Zeroed when `zeroed`; without it, for a
/// capture whose every element the caller writes, a kept buffer keeps its old values, so that
/// the maps of a model without masking are not cleared before being overwritten.
pub(super) fn capture_buffer(len: usize, zeroed: bool) -> Vec<f32> {
    if let Some(buffer) = crate::model::captured::recycled::take(len, zeroed) {
        return buffer;
    }
    let buffer = vec![0f32; len];
    #[cfg(target_os = "linux")]
    advise_huge_pages(&buffer);
    buffer
}

/// `len` zeros in memory the kernel backs with transparent huge pages where it can: a large
/// buffer touched page by page otherwise faults once per 4 KiB, and once more (a copy and a
/// flush of every thread's TLB entry) where its first touch is a read and its second a write,
/// as AdamW's first step does to its moments (0.9 GB at bert-base: seconds in a VM).
pub(crate) fn zeroed_huge(len: usize) -> Vec<f32> {
    let buffer = vec![0f32; len];
    #[cfg(target_os = "linux")]
    advise_huge_pages(&buffer);
    buffer
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(buffer: &[f32]) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = buffer.as_ptr() as usize;
    let end = start + std::mem::size_of_val(buffer);
    let (first, last) = (
        start.next_multiple_of(HUGE_PAGE),
        end / HUGE_PAGE * HUGE_PAGE,
    );
    if last > first {
        // SAFETY: MADV_HUGEPAGE only advises the kernel how to back whole pages inside this live
        // allocation; contents and validity of the memory are unchanged, and failure is harmless.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

/// Softmax of each row, in place.
fn softmax_rows(values: &mut [f32], width: usize) {
    for row in values.chunks_exact_mut(width) {
        softmax(row);
    }
}

/// Softmax of each row of a causal map whose first row is query `first_query`, in place: query
/// `i` spreads over keys `0..=i` and the keys after it get exactly 0, as transformers' additive
/// mask of the dtype's minimum gives.
fn softmax_rows_causal(values: &mut [f32], width: usize, first_query: usize) {
    for (row_index, row) in values.chunks_exact_mut(width).enumerate() {
        let query = first_query + row_index;
        let (seen, unseen) = row.split_at_mut((query + 1).min(width));
        softmax(seen);
        unseen.fill(0.0);
    }
}

/// Attention scores of rows of `width` keys, the first row query `first_query`, turned into
/// probabilities in place: soft-capped where the family caps them, then each row's softmax over
/// the keys its query sees (causality and the layer's window); every other key gets exactly 0,
/// as transformers' additive mask of the dtype's minimum gives.
pub(super) fn scores_to_probs(
    values: &mut [f32],
    width: usize,
    first_query: usize,
    (causal, window): (bool, KeyWindow),
    softcap: Option<f32>,
) {
    if let Some(cap) = softcap {
        values.iter_mut().for_each(|x| *x = capped(*x, cap));
    }
    match window {
        KeyWindow::Whole if causal => softmax_rows_causal(values, width, first_query),
        KeyWindow::Whole => softmax_rows(values, width),
        window => {
            for (row_index, row) in values.chunks_exact_mut(width).enumerate() {
                let keys = window.keys_seen(causal, first_query + row_index, width);
                row[..keys.start].fill(0.0);
                softmax(&mut row[keys.clone()]);
                row[keys.end..].fill(0.0);
            }
        }
    }
}

dispatched! {
    /// Softmax of one row, in place.
    pub(in crate::model::backend) fn softmax(row: &mut [f32]) {
        const LANES: usize = 16;
        // Lane-wise maxima vectorise; a single running maximum is one long dependency chain.
        let mut maxima = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            maxima
                .iter_mut()
                .zip(chunk)
                .for_each(|(max, &x)| *max = max.max(x));
        }
        let max = (maxima.iter().chain(chunks.remainder()))
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|x| *x = exp(*x - max));
        // Lane-wise partial sums vectorise; a single running sum would not.
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            lanes.iter_mut().zip(chunk).for_each(|(sum, x)| *sum += x);
        }
        let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let inverse = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inverse);
    }
}

dispatched! {
    /// `Σ exp(x − shift)` over `values`, in the vectorised `exp` and 16 lanes of partial sums: a
    /// vocabulary row's softmax denominator (50,257 terms for GPT-2) without a libm call per term.
    pub(crate) fn sum_exp(values: &[f32], shift: f32) -> f32 {
        const LANES: usize = 16;
        let mut lanes = [0f32; LANES];
        let mut chunks = values.chunks_exact(LANES);
        for chunk in &mut chunks {
            lanes
                .iter_mut()
                .zip(chunk)
                .for_each(|(sum, &x)| *sum += exp(x - shift));
        }
        let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - shift)).sum();
        lanes.iter().sum::<f32>() + tail
    }
}

/// Adds `residual` to `xt` (`[features, columns]`) when given, then gives each column's mean and
/// `1/√(variance + eps)`, in f64.
fn column_statistics(
    xt: &mut [f32],
    residual: Option<&[f32]>,
    features: usize,
    eps: f64,
    columns: usize,
) -> (Vec<f64>, Vec<f64>) {
    if let Some(residual) = residual {
        add_residual(xt, residual);
    }
    let xt = &*xt;
    by_column_ranges(columns, |range| {
        let mut mean = vec![0f64; range.len()];
        for row in xt.chunks_exact(columns) {
            mean.iter_mut()
                .zip(&row[range.clone()])
                .for_each(|(m, &x)| *m += f64::from(x));
        }
        mean.iter_mut().for_each(|m| *m /= features as f64);
        let mut variance = vec![0f64; range.len()];
        for row in xt.chunks_exact(columns) {
            variance
                .iter_mut()
                .zip(&row[range.clone()])
                .zip(&mean)
                .for_each(|((v, &x), m)| *v += (f64::from(x) - m).powi(2));
        }
        mean.into_iter()
            .zip(variance)
            .map(|(m, v)| (m, 1.0 / (v / features as f64 + eps).sqrt()))
            .collect()
    })
    .into_iter()
    .unzip()
}

/// RMSNorm of each column of feature-major `xt` (`[features, columns]`), in place, after adding
/// `residual` when given: `x/√(mean(x²) + ε)·γ`, the mean square taken in f64.
pub(super) fn rms_norm_columns(
    xt: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    eps: f64,
    columns: usize,
) {
    let inv_rms = rms_statistics(xt, residual, gamma.len(), eps, columns);
    xt.par_chunks_mut(columns).zip(gamma).for_each(|(row, &g)| {
        for (x, s) in row.iter_mut().zip(&inv_rms) {
            // transformers rounds the normalised value to f32 before the scale.
            *x = ((f64::from(*x) * s) as f32) * g;
        }
    });
}

/// `1/√(mean(x²) + ε)` of each column, after adding `residual` to `xt` when given.
fn rms_statistics(
    xt: &mut [f32],
    residual: Option<&[f32]>,
    features: usize,
    eps: f64,
    columns: usize,
) -> Vec<f64> {
    if let Some(residual) = residual {
        add_residual(xt, residual);
    }
    let xt = &*xt;
    by_column_ranges(columns, |range| {
        let mut squares = vec![0f64; range.len()];
        for row in xt.chunks_exact(columns) {
            squares
                .iter_mut()
                .zip(&row[range.clone()])
                .for_each(|(m, &x)| *m += f64::from(x) * f64::from(x));
        }
        squares
            .iter()
            .map(|m| 1.0 / (m / features as f64 + eps).sqrt())
            .collect()
    })
}

/// LayerNorm of each column of feature-major `xt` (`[features, columns]`), in place, after adding
/// `residual` (same shape) when given. Statistics are taken in f64: cheap at these sizes and no
/// less exact than transformers' f32.
pub(super) fn layer_norm_columns(
    xt: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    columns: usize,
) {
    let (mean, inv_std) = column_statistics(xt, residual, gamma.len(), eps, columns);
    xt.par_chunks_mut(columns)
        .zip(gamma)
        .zip(beta)
        .for_each(|((row, &g), &b)| {
            let (g, b) = (f64::from(g), f64::from(b));
            for ((x, m), s) in row.iter_mut().zip(&mean).zip(&inv_std) {
                *x = ((f64::from(*x) - m) * s * g + b) as f32;
            }
        });
}

/// `Wᵀ·G (+ residual)`: the gradient with respect to a dense layer's input, for `w`
/// `[outputs, inputs]` and the output's gradient `grad` `[outputs, columns]`; `residual`
/// (`[inputs, columns]`) seeds the result, as a residual connection adds its gradient.
pub(super) fn dense_backward(
    w: &[f32],
    outputs: usize,
    inputs: usize,
    grad: &[f32],
    columns: usize,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(w.len(), outputs * inputs);
    assert_eq!(grad.len(), outputs * columns);
    let mut out = match residual {
        Some(residual) => {
            assert_eq!(residual.len(), inputs * columns);
            residual.to_vec()
        }
        None => vec![0f32; inputs * columns],
    };
    MatMul {
        m: inputs,
        n: columns,
        k: outputs,
        lhs: Strided::transposed(w, inputs),
        rhs: Strided::row_major(grad, columns),
    }
    .run(&mut out, columns, 1.0, true, true);
    out
}

/// Multiplies `grad` in place by the activation's derivative at the pre-activation values
/// `pre` (same length).
pub(in crate::model::backend) fn activation_backward(
    grad: &mut [f32],
    pre: &[f32],
    activation: Activation,
) {
    assert_eq!(grad.len(), pre.len());
    grad.par_chunks_mut(4096)
        .zip(pre.par_chunks(4096))
        .for_each(|(grad, pre)| match activation {
            Activation::GeluErf => gelu_erf_backward(grad, pre),
            Activation::GeluTanh => gelu_tanh_backward(grad, pre),
            Activation::Relu => grad
                .iter_mut()
                .zip(pre)
                .for_each(|(g, &x)| *g = if x > 0.0 { *g } else { 0.0 }),
            Activation::Tanh => grad.iter_mut().zip(pre).for_each(|(g, &x)| {
                let t = x.tanh();
                *g *= 1.0 - t * t;
            }),
            // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))).
            Activation::Silu => grad.iter_mut().zip(pre).for_each(|(g, &x)| {
                let sigmoid = 1.0 / (1.0 + exp(-x));
                *g *= sigmoid * (1.0 + x * (1.0 - sigmoid));
            }),
        });
}

dispatched! {
    /// `d/dx x·Φ(x) = Φ(x) + x·φ(x)`.
    fn gelu_erf_backward(grad: &mut [f32], pre: &[f32]) {
        let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
        for (g, &x) in grad.iter_mut().zip(pre) {
            // Φ(x) = (1 + erf(z))/2 and φ(x) ∝ e^{-z²}, with z = x/√2.
            let z = x * std::f32::consts::FRAC_1_SQRT_2;
            let gaussian = exp(-z * z);
            let cdf = 0.5 * (1.0 + erf_given_gaussian(z, gaussian));
            *g *= cdf + x * inv_sqrt_2pi * gaussian;
        }
    }
}

dispatched! {
    /// The derivative of the tanh approximation of GELU.
    fn gelu_tanh_backward(grad: &mut [f32], pre: &[f32]) {
        let sqrt_2_over_pi = (2.0 / std::f32::consts::PI).sqrt();
        for (g, &x) in grad.iter_mut().zip(pre) {
            let inner = sqrt_2_over_pi * (x + 0.044715 * x * x * x);
            let tanh = 1.0 - 2.0 / (exp(2.0 * inner) + 1.0);
            let d_inner = sqrt_2_over_pi * (1.0 + 3.0 * 0.044715 * x * x);
            *g *= 0.5 * (1.0 + tanh) + 0.5 * x * (1.0 - tanh * tanh) * d_inner;
        }
    }
}

/// What a LayerNorm's backward pass keeps of its forward: the normalised values `x̂`
/// (`[features, columns]`) and each column's `1/σ`.
#[derive(Default)]
pub(super) struct NormTape {
    normalized: Vec<f32>,
    inv_std: Vec<f64>,
}

/// [`layer_norm_columns`] (the same arithmetic), keeping what its backward pass needs.
pub(super) fn layer_norm_columns_taped(
    xt: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    columns: usize,
) -> NormTape {
    let (mean, inv_std) = column_statistics(xt, residual, gamma.len(), eps, columns);
    let mut normalized = vec![0f32; xt.len()];
    xt.par_chunks_mut(columns)
        .zip(normalized.par_chunks_mut(columns))
        .zip(gamma)
        .zip(beta)
        .for_each(|(((row, out), &g), &b)| {
            let (g, b) = (f64::from(g), f64::from(b));
            for (((x, o), m), s) in row.iter_mut().zip(out).zip(&mean).zip(&inv_std) {
                let hat = (f64::from(*x) - m) * s;
                *o = hat as f32;
                *x = (hat * g + b) as f32;
            }
        });
    NormTape {
        normalized,
        inv_std,
    }
}

/// [`rms_norm_columns`] (the same arithmetic), keeping what its backward pass needs: `x̂ = x/rms`
/// and each column's `1/rms`.
pub(super) fn rms_norm_columns_taped(
    xt: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    eps: f64,
    columns: usize,
) -> NormTape {
    let inv_rms = rms_statistics(xt, residual, gamma.len(), eps, columns);
    let mut normalized = vec![0f32; xt.len()];
    xt.par_chunks_mut(columns)
        .zip(normalized.par_chunks_mut(columns))
        .zip(gamma)
        .for_each(|((row, out), &g)| {
            for ((x, o), s) in row.iter_mut().zip(out).zip(&inv_rms) {
                let hat = (f64::from(*x) * s) as f32;
                *o = hat;
                *x = hat * g;
            }
        });
    NormTape {
        normalized,
        inv_std: inv_rms,
    }
}

/// The gradient with respect to an RMSNorm's input from its output's gradient:
/// `(1/rms)·(ĝ − x̂·mean(ĝ·x̂))` per column, with `ĝ = grad·γ` (LayerNorm's without the mean).
pub(super) fn rms_norm_backward_columns(
    tape: &NormTape,
    gamma: &[f32],
    grad: &[f32],
    columns: usize,
) -> Vec<f32> {
    norm_backward_columns(tape, gamma, grad, columns, false)
}

/// The gradient with respect to a LayerNorm's input (after any residual sum) from its output's
/// gradient `grad` (`[features, columns]`): `(1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` per column,
/// with `ĝ = grad·γ`.
pub(super) fn layer_norm_backward_columns(
    tape: &NormTape,
    gamma: &[f32],
    grad: &[f32],
    columns: usize,
) -> Vec<f32> {
    norm_backward_columns(tape, gamma, grad, columns, true)
}

/// LayerNorm's (`centred`) or RMSNorm's backward pass.
fn norm_backward_columns(
    tape: &NormTape,
    gamma: &[f32],
    grad: &[f32],
    columns: usize,
    centred: bool,
) -> Vec<f32> {
    let features = gamma.len() as f64;
    let (mean_g, mean_gx): (Vec<f64>, Vec<f64>) = by_column_ranges(columns, |range| {
        let mut mean_g = vec![0f64; range.len()];
        let mut mean_gx = vec![0f64; range.len()];
        for ((row, hat), &g) in grad
            .chunks_exact(columns)
            .zip(tape.normalized.chunks_exact(columns))
            .zip(gamma)
        {
            let g = f64::from(g);
            let (row, hat) = (&row[range.clone()], &hat[range.clone()]);
            for (((a, b), &d), &h) in mean_g.iter_mut().zip(&mut mean_gx).zip(row).zip(hat) {
                let scaled = f64::from(d) * g;
                *a += scaled;
                *b += scaled * f64::from(h);
            }
        }
        mean_g
            .into_iter()
            .zip(mean_gx)
            .map(|(a, b)| (if centred { a / features } else { 0.0 }, b / features))
            .collect()
    })
    .into_iter()
    .unzip();
    filled_in_parallel(grad.len(), columns, |feature, out| {
        let row = &grad[feature * columns..][..columns];
        let hat = &tape.normalized[feature * columns..][..columns];
        let g = f64::from(gamma[feature]);
        for (((((o, &d), &h), a), b), s) in out
            .iter_mut()
            .zip(row)
            .zip(hat)
            .zip(&mean_g)
            .zip(&mean_gx)
            .zip(&tape.inv_std)
        {
            *o = ((f64::from(d) * g - a - f64::from(h) * b) * s) as f32;
        }
    })
}

/// Transposes a row-major `rows × cols` block into `dst` (`cols × rows`).
/// Large blocks are split into bands of destination rows, one task each.
pub(super) fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    /// Destination rows (source columns) per task: each task reads a 256-byte run of every
    /// source row.
    const BAND: usize = 64;
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
    let band = |first: usize, dst: &mut [f32]| {
        let width = dst.len() / rows.max(1);
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (c, &value) in row[first..first + width].iter().enumerate() {
                dst[c * rows + r] = value;
            }
        }
    };
    if rows * cols < 1 << 16 || rows == 0 {
        band(0, dst);
        return;
    }
    dst.par_chunks_mut(BAND * rows)
        .enumerate()
        .for_each(|(index, dst)| band(index * BAND, dst));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element-wise kernels at every level the CPU runs give what the baseline gives: the
    /// same arithmetic in the same order, only wider.
    #[test]
    fn every_level_computes_the_element_wise_kernels_alike() {
        use super::super::isa::{with_level, Isa};
        let values: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin() * 6.0).collect();
        let run = |level| {
            with_level(level, || {
                let mut outputs = Vec::new();
                for kernel in [gelu_erf_slice, gelu_tanh_slice, silu_slice, softmax] {
                    let mut out = values.clone();
                    kernel(&mut out);
                    outputs.push(out);
                }
                let mut out = vec![0.0; values.len()];
                gelu_erf_into(&values, &mut out);
                outputs.push(out);
                for backward in [gelu_erf_backward, gelu_tanh_backward] {
                    let mut grad = vec![1.0; values.len()];
                    backward(&mut grad, &values);
                    outputs.push(grad);
                }
                let mut dots = vec![0.0; 7];
                rows_dot(&values[..7 * 143], 143, &values[..143], &mut dots);
                outputs.push(dots);
                outputs.push(vec![dot(&values[..143], &values[143..286])]);
                outputs.push(vec![sum_exp(&values, 1.0)]);
                outputs
            })
        };
        let baseline = run(Isa::Baseline);
        for level in [Isa::Avx2, Isa::Avx512] {
            if level > Isa::detected() {
                continue;
            }
            for (index, (wide, base)) in run(level).iter().zip(&baseline).enumerate() {
                for (a, b) in wide.iter().zip(base) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                        "{level:?} {index}: {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn dense_matches_naive_product() {
        // Every way a band is seeded: not at all (the product writes it), by the bias, by the
        // residual, by both; an odd number of outputs, so the bands differ in size.
        let (outputs, inputs, columns) = (7, 4, 5);
        let w: Vec<f32> = (0..outputs * inputs)
            .map(|v| v as f32 * 0.5 - 2.0)
            .collect();
        let b: Vec<f32> = (0..outputs).map(|o| o as f32 * 0.75 - 2.0).collect();
        let residual: Vec<f32> = (0..outputs * columns).map(|v| (v as f32).cos()).collect();
        let xt: Vec<f32> = (0..inputs * columns).map(|v| (v as f32).sin()).collect();
        for (bias, residual) in [
            (None, None),
            (Some(&b[..]), None),
            (None, Some(&residual[..])),
            (Some(&b[..]), Some(&residual[..])),
        ] {
            let out = dense(&w, bias, outputs, inputs, &xt, columns, residual);
            for o in 0..outputs {
                for c in 0..columns {
                    let expected: f32 = residual.map_or(0.0, |r| r[o * columns + c])
                        + bias.map_or(0.0, |b| b[o])
                        + (0..inputs)
                            .map(|i| w[o * inputs + i] * xt[i * columns + c])
                            .sum::<f32>();
                    assert!((out[o * columns + c] - expected).abs() < 1e-5);
                }
            }
        }
    }

    /// The vocabulary head's row-major product against a plain loop: several tiles and a
    /// partial one, with and without a bias, and the one-column (generation) path.
    #[test]
    fn dense_rows_matches_naive_product() {
        let (outputs, inputs) = (600, 37);
        let w: Vec<f32> = (0..outputs * inputs)
            .map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5)
            .collect();
        let bias: Vec<f32> = (0..outputs).map(|i| (i % 5) as f32 - 2.0).collect();
        for columns in [1, 3, 130] {
            let xt: Vec<f32> = (0..inputs * columns)
                .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.5)
                .collect();
            for bias in [None, Some(&bias[..])] {
                let out = dense_rows(&w, bias, outputs, inputs, &xt, columns);
                for c in 0..columns {
                    for o in 0..outputs {
                        let expected = bias.map_or(0.0, |bias| bias[o])
                            + (0..inputs)
                                .map(|p| w[o * inputs + p] * xt[p * columns + c])
                                .sum::<f32>();
                        assert!(
                            (out[c * outputs + o] - expected).abs() < 1e-3,
                            "column {c} output {o}: {} vs {expected}",
                            out[c * outputs + o]
                        );
                    }
                }
            }
        }
    }

    /// Logits large enough to come from the kept memory are written whole over whatever an
    /// earlier pass left there.
    #[test]
    fn dense_rows_overwrites_kept_memory() {
        let (outputs, inputs, columns) = (4099, 3, 520);
        crate::model::captured::recycled::give(vec![f32::NAN; outputs * columns]);
        let w: Vec<f32> = (0..outputs * inputs).map(|i| (i % 7) as f32).collect();
        let xt: Vec<f32> = (0..inputs * columns).map(|i| (i % 3) as f32).collect();
        let out = dense_rows(&w, None, outputs, inputs, &xt, columns);
        for c in 0..columns {
            for o in 0..outputs {
                let expected: f32 = (0..inputs)
                    .map(|p| w[o * inputs + p] * xt[p * columns + c])
                    .sum();
                assert_eq!(out[c * outputs + o], expected, "column {c} output {o}");
            }
        }
    }

    #[test]
    fn dense_adds_the_residual_and_goes_without_bias() {
        let w = vec![1.0, 2.0, 3.0, 4.0];
        let xt = vec![1.0, 0.0, 0.0, 1.0];
        let residual = vec![10.0, 20.0, 30.0, 40.0];
        let out = dense(&w, None, 2, 2, &xt, 2, Some(&residual));
        assert_eq!(out, vec![11.0, 22.0, 33.0, 44.0]);
    }

    #[test]
    fn causal_softmax_sees_only_earlier_keys() {
        let mut values = vec![5.0; 9];
        softmax_rows_causal(&mut values, 3, 0);
        assert_eq!(&values[..3], &[1.0, 0.0, 0.0]);
        assert!((values[3] - 0.5).abs() < 1e-7 && values[5] == 0.0);
        assert!((values[6..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // A block of rows starting at query 1 masks as rows 1 and 2 of the whole map do.
        let mut block = vec![5.0; 6];
        softmax_rows_causal(&mut block, 3, 1);
        assert_eq!(block, values[3..]);
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut values = vec![1.0, 2.0, 3.0, -1000.0, 0.0, 1000.0];
        softmax_rows(&mut values, 3);
        assert!((values[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(values[5], 1.0);
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let relative = (exp(x) - x.exp()).abs() / x.exp();
            assert!(relative < 3e-7, "exp({x}) off by {relative:e}");
            let absolute = (erf(x) - libm::erff(x)).abs();
            assert!(absolute < 3e-7, "erf({x}) off by {absolute:e}");
        }
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn layer_norm_normalises_columns() {
        // Two columns of three features, feature-major.
        let mut xt = vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
        layer_norm_columns(&mut xt, None, &[1.0; 3], &[0.5; 3], 0.0, 2);
        let first: Vec<f32> = xt.iter().step_by(2).copied().collect();
        let expected = [-1.224_744_9 + 0.5, 0.5, 1.224_744_9 + 0.5];
        for (got, want) in first.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6);
        }
        assert!((xt[1] - first[0]).abs() < 1e-6, "scale invariance");
    }

    #[test]
    fn transpose_round_trips() {
        let src: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let mut t = vec![0.0; 6];
        transpose_into(&src, 2, 3, &mut t);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }
}
