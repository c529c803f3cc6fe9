//! One launch of ossterm's own CUDA kernels, described without a device: which kernel, the
//! grid, and every argument in the kernel's order. The CUDA executor (`cuda::run`) turns it
//! into a cudarc launch; the kernel emulator the tests use (`emu`) replays the same
//! description on the CPU, so the argument order, the scalar types and the buffer offsets that
//! the GPU will see are the ones the tests check.

use candle_core::{DType, Layout};

/// Which compiled `.cu` file holds the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// `q4_0_moe.cu`.
    Moe,
    /// `attention.cu`.
    Attention,
    /// `dense.cu`.
    Dense,
}

/// One kernel argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A pointer into input `index` of the op (custom ops' own tensors, such as biases, come
    /// after the op's inputs), `offset` elements into its storage.
    Input {
        index: usize,
        offset: usize,
    },
    /// The op's result: `len` values of `dtype`, written by the kernel.
    Output {
        dtype: DType,
        len: usize,
    },
    /// Device scratch of `len` f32 values, shared by the launches of one op that name the
    /// same `slot`; the first of them writes it before anything reads it.
    Scratch {
        slot: usize,
        len: usize,
    },
    I32(i32),
    I64(i64),
    F32(f32),
}

/// A kernel launch: `grid` blocks of `block` threads running `kernel` on `args`.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub module: Module,
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub args: Vec<Arg>,
}

/// Threads per block of the element-wise kernels (cudarc's `LaunchConfig::for_num_elems`).
pub const ELEMENTWISE_THREADS: u32 = 1024;

impl Launch {
    /// A launch of one thread per element over `n` elements, `ELEMENTWISE_THREADS` a block.
    pub fn elementwise(module: Module, kernel: &'static str, n: usize, args: Vec<Arg>) -> Self {
        let n = n as u32;
        Self {
            module,
            kernel,
            grid: (n.div_ceil(ELEMENTWISE_THREADS).max(1), 1, 1),
            block: (ELEMENTWISE_THREADS, 1, 1),
            args,
        }
    }
}

/// The dtype and length of the one output of an op's launches.
pub fn output_of(launches: &[Launch]) -> candle_core::Result<(DType, usize)> {
    let mut outputs = launches
        .iter()
        .flat_map(|l| &l.args)
        .filter_map(|a| match a {
            Arg::Output { dtype, len } => Some((*dtype, *len)),
            _ => None,
        });
    match (outputs.next(), outputs.next()) {
        (Some(output), None) => Ok(output),
        _ => candle_core::bail!("an op's launches write exactly one output"),
    }
}

/// An input argument for a contiguous tensor: its first element.
pub fn contiguous_input(index: usize, layout: &Layout, what: &str) -> candle_core::Result<Arg> {
    let (offset, _) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
    Ok(Arg::Input { index, offset })
}

/// [`contiguous_input`] for a kernel that reads it `align` elements at a time: its first
/// element must sit at a multiple of `align`.
pub fn aligned_input(
    index: usize,
    layout: &Layout,
    align: usize,
    what: &str,
) -> candle_core::Result<Arg> {
    let arg = contiguous_input(index, layout, what)?;
    match arg {
        Arg::Input { offset, .. } if !offset.is_multiple_of(align) => candle_core::bail!(
            "{what} start at element {offset}, not a multiple of {align} as the kernel reads them"
        ),
        arg => Ok(arg),
    }
}

/// A grid's y extent of `n`, within CUDA's limit.
pub fn grid_y(n: usize, what: &str) -> candle_core::Result<u32> {
    if n > MAX_GRID_Y {
        candle_core::bail!("{n} {what} in one launch (CUDA's grid takes {MAX_GRID_Y})");
    }
    Ok(n as u32)
}

/// A usize that the kernel takes as an `int`.
pub fn int(value: usize, what: &str) -> candle_core::Result<Arg> {
    i32::try_from(value)
        .map(Arg::I32)
        .map_err(|_| candle_core::Error::Msg(format!("{what} = {value} does not fit a kernel int")))
}

/// CUDA's limit on a grid's y and z dimensions.
pub const MAX_GRID_Y: usize = 65_535;
