//! The x86-64 SIMD code behind the kernels: the vector math (`math`: 8-lane `exp` and fixed-order
//! sums), the row kernels of the fused ops (`rows`), and the `x · Wᵀ` column kernels of
//! [`super::linear`], generated for AVX2 (`avx2`) and AVX-512F (`avx512`) from one body,
//! [`columns_kernel!`], where the two differ only in width, group size and prefetch. Callers check
//! the CPU features first (`super::flex::simd_available`, `avx512_available`).

/// Most input rows the `x · Wᵀ` kernels take. Row counts above this take burn's matmul (gemm):
/// prefill, mostly. At 64 rows the lanes kernel still beat gemm by a third (session 13); larger
/// decode batches have not been measured.
pub(crate) const MAX_ROWS: usize = 64;

/// Weight rows per block: four rows and two input rows keep 8 accumulators, 4 weight vectors and an
/// input vector in the 16 AVX2 registers.
pub(crate) const COLS: usize = 4;

/// The column kernel `columns(x, w, out, m, k, start, end)`: output columns `start..end` of
/// `x [m, k] · w[n, k]ᵀ` into `out` (`[m, end - start]`), four weight rows at a time, each block's
/// weight rows walked a tile of `tile_depth(m)` floats at a time for every input row (groups of
/// `group` rows, then single rows), one FMA chain per (row, column) over the depth in lane order,
/// reduced by `reduce` and finished by a scalar tail. With `prefetch_blocks: Some(n)` the first group's
/// pass over each tile prefetches the weight rows `n` blocks ahead. The grouping changes no
/// result: each accumulator sees the same FMAs in the same order whatever its group.
/// Expects in scope: `std::arch::x86_64::*`, `COLS`, `MAX_ROWS` and `fn tile_depth(usize) -> usize`.
macro_rules! columns_kernel {
    (
        features: $features:literal,
        vector: $v:ty,
        lanes: $lanes:literal,
        zero: $zero:ident,
        load: $load:ident,
        fma: $fma:ident,
        reduce: $reduce:ident,
        group: $group:literal,
        prefetch_blocks: $prefetch_blocks:expr,
    ) => {
        /// See `kernels::linear`'s `columns`. Safety: the CPU has the features this kernel is
        /// compiled for.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn columns(
            x: &[f32],
            w: &[f32],
            out: &mut [f32],
            m: usize,
            k: usize,
            start: usize,
            end: usize,
        ) {
            debug_assert!(m <= MAX_ROWS);
            let width = end - start;
            let lanes = k / $lanes * $lanes;
            let mut acc = [[$zero(); COLS]; MAX_ROWS];
            let mut j = start;
            while j < end {
                let cols = (end - j).min(COLS);
                let w_row = |row: usize| &w[row * k..(row + 1) * k];
                // Short blocks repeat their last weight row; the repeats are computed and dropped.
                let w_rows = [0, 1, 2, 3].map(|c| w_row(j + c.min(cols - 1)));
                // The weight rows `prefetch_blocks` blocks ahead (the last row past the end): the
                // first input rows' pass over each tile fetches them a line per step, so the stream
                // from memory overlaps the arithmetic (a bulk prefetch per tile measured slower).
                let ahead: Option<[&[f32]; COLS]> = $prefetch_blocks.map(|blocks: usize| {
                    [0, 1, 2, 3].map(|c| w_row((j + blocks * COLS + c).min(end - 1)))
                });
                for a in acc.iter_mut().take(m) {
                    *a = [$zero(); COLS];
                }
                let mut i0 = 0;
                while i0 < lanes {
                    let i1 = (i0 + tile_depth(m)).min(lanes);
                    let mut r = 0;
                    while r + $group <= m {
                        let rows: [&[f32]; $group] = std::array::from_fn(|g| &x[(r + g) * k..]);
                        let group: &mut [[$v; COLS]; $group] = (&mut acc[r..r + $group])
                            .try_into()
                            .expect("a group of rows");
                        let prefetch = if r == 0 { ahead } else { None };
                        // SAFETY: i1 <= lanes <= k, the length of every row slice.
                        unsafe { tile::<$group>(rows, w_rows, prefetch, i0, i1, group) };
                        r += $group;
                    }
                    while r < m {
                        let prefetch = if r == 0 { ahead } else { None };
                        let one = std::array::from_mut(&mut acc[r]);
                        // SAFETY: as above.
                        unsafe { tile::<1>([&x[r * k..]], w_rows, prefetch, i0, i1, one) };
                        r += 1;
                    }
                    i0 = i1;
                }
                for (r, a) in acc.iter().enumerate().take(m) {
                    let x_row = &x[r * k..(r + 1) * k];
                    for c in 0..cols {
                        let mut s = $reduce(a[c]);
                        for t in lanes..k {
                            s += x_row[t] * w_rows[c][t];
                        }
                        out[r * width + (j - start + c)] = s;
                    }
                }
                j += cols;
            }
        }

        /// Lanes `i0..i1` of `R` input rows against the block's four weight rows, each weight
        /// vector loaded once for the `R` rows; the same FMA chain per (row, column) whatever `R`,
        /// so a row's result does not depend on how the rows were grouped.
        /// Safety: the CPU has the kernel's features; `i1` is at most the length of every row
        /// slice, and a multiple of the lane count past `i0`.
        #[target_feature(enable = $features)]
        unsafe fn tile<const R: usize>(
            x: [&[f32]; R],
            w: [&[f32]; COLS],
            prefetch: Option<[&[f32]; COLS]>,
            i0: usize,
            i1: usize,
            acc: &mut [[$v; COLS]; R],
        ) {
            let mut a = *acc;
            let mut i = i0;
            while i < i1 {
                // SAFETY: i + lanes <= i1 <= every slice's length (the caller's contract).
                unsafe {
                    if let Some(ahead) = prefetch {
                        for row in ahead {
                            _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(i).cast());
                        }
                    }
                    let v: [$v; COLS] = std::array::from_fn(|c| $load(w[c].as_ptr().add(i)));
                    for r in 0..R {
                        let u = $load(x[r].as_ptr().add(i));
                        for c in 0..COLS {
                            a[r][c] = $fma(u, v[c], a[r][c]);
                        }
                    }
                }
                i += $lanes;
            }
            *acc = a;
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod math;
#[cfg(target_arch = "x86_64")]
pub(crate) mod rows;
