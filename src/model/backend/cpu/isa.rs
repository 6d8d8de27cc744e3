//! Which instruction set the CPU kernels run: the widest the CPU has (AVX-512, AVX2 with FMA,
//! or the baseline), capped by the `BERTSCOPE_ISA` environment variable so that a narrower path
//! can be measured, or worked around, on a machine that has a wider one. Everything the tuned
//! kernels compute dispatches on it at run time: the `gemm` crate's products and the
//! element-wise passes ([`dispatched!`]). candle's own CPU ops (the candle backend's products)
//! choose for themselves.

use std::sync::OnceLock;

/// The environment variable that caps the dispatch: `avx512`, `avx2` or `baseline`.
pub const ISA_VARIABLE: &str = "BERTSCOPE_ISA";

/// An instruction-set level, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// What every x86-64 (or other) CPU runs: SSE2 on x86-64.
    Baseline,
    /// AVX2 with FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F and VL besides AVX2 and FMA.
    Avx512,
}

impl Isa {
    /// The name `BERTSCOPE_ISA` takes and the benchmarks print.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "baseline" | "scalar" | "sse2" => Some(Isa::Baseline),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The widest level this CPU runs.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

/// The level for a cap (`BERTSCOPE_ISA`'s value, if set) on a CPU that runs `detected`: the
/// narrower of the two, and a one-line warning when the cap names no level.
fn capped(detected: Isa, cap: Option<&str>) -> (Isa, Option<String>) {
    let Some(cap) = cap.filter(|cap| !cap.trim().is_empty()) else {
        return (detected, None);
    };
    match Isa::parse(cap) {
        Some(level) => (level.min(detected), None),
        None => (
            detected,
            Some(format!(
                "{ISA_VARIABLE}={cap} is not avx512, avx2 or baseline; running {}",
                detected.name()
            )),
        ),
    }
}

#[cfg(test)]
thread_local! {
    /// A level a test runs its thread's kernels at.
    static TEST_LEVEL: std::cell::Cell<Option<Isa>> = const { std::cell::Cell::new(None) };
}

/// `f` with this thread's kernels at `level` (one the CPU runs), for tests that compare levels.
#[cfg(test)]
pub(crate) fn with_level<R>(level: Isa, f: impl FnOnce() -> R) -> R {
    assert!(level <= Isa::detected());
    TEST_LEVEL.with(|cell| cell.set(Some(level)));
    let out = f();
    TEST_LEVEL.with(|cell| cell.set(None));
    out
}

/// The level the kernels run, chosen once per process.
pub fn isa() -> Isa {
    #[cfg(test)]
    if let Some(level) = TEST_LEVEL.with(std::cell::Cell::get) {
        return level;
    }
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let cap = std::env::var(ISA_VARIABLE).ok();
        let (level, warning) = capped(Isa::detected(), cap.as_deref());
        if let Some(warning) = warning {
            eprintln!("bertscope: {warning}");
        }
        level
    })
}

/// A function compiled three times, for AVX-512, for AVX2 with FMA and for the baseline, which
/// runs the copy [`isa`] chooses: the body is written once, plainly, and vectorises at each
/// width. Inline helpers it calls (`#[inline(always)]`) are compiled into each copy.
macro_rules! dispatched {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? $body
                match $crate::model::backend::cpu::isa::isa() {
                    // SAFETY: `isa` chooses a level only where the CPU runs it.
                    $crate::model::backend::cpu::isa::Isa::Avx512 => {
                        return unsafe { avx512($($arg),*) }
                    }
                    $crate::model::backend::cpu::isa::Isa::Avx2 => {
                        return unsafe { avx2($($arg),*) }
                    }
                    $crate::model::backend::cpu::isa::Isa::Baseline => {}
                }
            }
            $body
        }
    };
}
pub(crate) use dispatched;

/// `dst = alpha·dst + beta·lhs·rhs` (`m×n`, `k` deep, strides in elements, `dst` read only
/// when `read_dst`) through the `gemm` crate at the level [`isa`] chose: its own dispatch
/// (which takes the widest) when nothing is capped, else its kernels of the capped level called
/// directly, as its dispatch would call them.
///
/// # Safety
/// As `gemm::gemm`: every element of the three views lies inside its allocation, and `dst`
/// aliases neither operand.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    (dst_cs, dst_rs): (isize, isize),
    read_dst: bool,
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
    (alpha, beta): (f32, f32),
    parallelism: gemm::Parallelism,
) {
    let level = isa();
    if level == Isa::detected() {
        // SAFETY: the caller's.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                dst_cs,
                dst_rs,
                read_dst,
                lhs,
                lhs_cs,
                lhs_rs,
                rhs,
                rhs_cs,
                rhs_rs,
                alpha,
                beta,
                false,
                false,
                false,
                parallelism,
            );
        }
        return;
    }
    // `gemm::gemm` first turns a row-major destination column-major, the layout its
    // microkernels write; so does this.
    let (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) =
        if dst_cs.abs() < dst_rs.abs() {
            (
                n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs,
            )
        } else {
            (
                m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs,
            )
        };
    macro_rules! with_kernels {
        ($simd:ty, $kernels:path, $lanes:expr) => {{
            use $kernels as kernels;
            // SAFETY: the caller's; the level is one the CPU runs.
            unsafe {
                gemm_common::gemm::gemm_basic_generic::<
                    $simd,
                    f32,
                    $lanes,
                    { kernels::MR_DIV_N * $lanes },
                    { kernels::NR },
                    { kernels::MR_DIV_N },
                    { kernels::H_M },
                    { kernels::H_N },
                >(
                    <$simd as gemm_common::simd::MixedSimd<f32, f32, f32, f32>>::try_new()
                        .expect("a level the CPU runs"),
                    m,
                    n,
                    k,
                    dst,
                    dst_cs,
                    dst_rs,
                    read_dst,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    alpha,
                    beta,
                    false,
                    false,
                    false,
                    |a, b, c| a * b + c,
                    &kernels::UKR,
                    &kernels::H_UKR,
                    false,
                    parallelism,
                );
            }
        }};
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => with_kernels!(gemm_common::simd::V3, gemm_f32::microkernel::fma::f32, 8),
        _ => with_kernels!(
            gemm_common::simd::Scalar,
            gemm_f32::microkernel::scalar::f32,
            1
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_narrows_the_level_and_never_widens_it() {
        assert_eq!(capped(Isa::Avx512, None), (Isa::Avx512, None));
        assert_eq!(capped(Isa::Avx512, Some("avx2")), (Isa::Avx2, None));
        assert_eq!(capped(Isa::Avx512, Some(" AVX-512 ")), (Isa::Avx512, None));
        assert_eq!(capped(Isa::Avx2, Some("avx512")), (Isa::Avx2, None));
        assert_eq!(capped(Isa::Avx2, Some("baseline")), (Isa::Baseline, None));
        assert_eq!(capped(Isa::Avx2, Some("")), (Isa::Avx2, None));
        let (level, warning) = capped(Isa::Avx2, Some("neon"));
        assert_eq!(level, Isa::Avx2);
        assert_eq!(
            warning.unwrap(),
            "BERTSCOPE_ISA=neon is not avx512, avx2 or baseline; running avx2"
        );
    }

    /// Every level's product against a plain triple loop, at shapes with remainders.
    #[test]
    fn every_level_multiplies_alike() {
        let (m, n, k) = (19, 23, 37);
        let lhs: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let rhs: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let mut expected = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                expected[i * n + j] = (0..k).map(|p| lhs[i * k + p] * rhs[p * n + j]).sum();
            }
        }
        for level in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
            if level > Isa::detected() {
                continue;
            }
            let mut dst = vec![0f32; m * n];
            with_level(level, || {
                // SAFETY: the views are the whole row-major matrices.
                unsafe {
                    gemm(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr(),
                        (1, n as isize),
                        false,
                        (lhs.as_ptr(), 1, k as isize),
                        (rhs.as_ptr(), 1, n as isize),
                        (0.0, 1.0),
                        gemm::Parallelism::None,
                    );
                }
            });
            assert_eq!(dst, expected, "{level:?}");
        }
    }
}
