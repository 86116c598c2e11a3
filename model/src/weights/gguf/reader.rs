//! The GGUF file format: metadata values, the tensor index and dequantisation of the tensor data.
//! Every offset and length read from the file is checked against its size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::error::{ModelError, Result};
use crate::weights::HostTensor;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; anything deeper than this is a corrupt file.
const MAX_ARRAY_DEPTH: usize = 4;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The GGUF type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "uint8",
            GgufValue::I8(_) => "int8",
            GgufValue::U16(_) => "uint16",
            GgufValue::I16(_) => "int16",
            GgufValue::U32(_) => "uint32",
            GgufValue::I32(_) => "int32",
            GgufValue::F32(_) => "float32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "uint64",
            GgufValue::I64(_) => "int64",
            GgufValue::F64(_) => "float64",
        }
    }

    /// Any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Floats, and integers read as floats.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A ggml tensor type id, as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const BF16: GgmlType = GgmlType(30);

    /// ggml's name for the type ("Q4_K", ...), or "type N" for ids ggml does not define.
    pub fn name(self) -> String {
        const NAMES: [&str; 40] = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "Q4_2",
            "Q4_3",
            "Q5_0",
            "Q5_1",
            "Q8_0",
            "Q8_1",
            "Q2_K",
            "Q3_K",
            "Q4_K",
            "Q5_K",
            "Q6_K",
            "Q8_K",
            "IQ2_XXS",
            "IQ2_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ2_S",
            "IQ4_XS",
            "I8",
            "I16",
            "I32",
            "I64",
            "F64",
            "IQ1_M",
            "BF16",
            "Q4_0_4_4",
            "Q4_0_4_8",
            "Q4_0_8_8",
            "TQ1_0",
            "TQ2_0",
            "IQ4_NL_4_4",
            "IQ4_NL_4_8",
            "IQ4_NL_8_8",
            "MXFP4",
        ];
        match NAMES.get(self.0 as usize) {
            Some(name) => (*name).to_string(),
            None => format!("type {}", self.0),
        }
    }

    /// (elements per block, bytes per block) for the types we can dequantise.
    fn block_layout(self) -> Option<(u64, u64)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Q8_0 => Some((32, 34)),
            _ => None,
        }
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml's `ne`: innermost (contiguous) dimension first. The row-major shape is this reversed.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The row-major (Hugging Face) shape: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn n_elements(&self) -> u64 {
        // Checked against overflow when the file was parsed.
        self.dims.iter().product()
    }
}

/// An open GGUF file: its metadata and tensor index, with the data memory-mapped.
pub struct GgufFile {
    pub(crate) path: PathBuf,
    data: memmap2::Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Bounds-checked little-endian reader over the file bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn error(&self, message: String) -> ModelError {
        ModelError::Format {
            file: self.path.to_path_buf(),
            message,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(self.error(format!(
                "truncated or corrupt: {} needs {n} bytes at offset {}, but the file has {} bytes",
                what(),
                self.pos,
                self.bytes.len()
            )));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error(format!("{} is not valid UTF-8", what())))
    }

    fn value(
        &mut self,
        value_type: u32,
        depth: usize,
        what: &dyn Fn() -> String,
    ) -> Result<GgufValue> {
        Ok(match value_type {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.error(format!("{}: invalid bool byte {b}", what()))),
            },
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.error(format!("{}: arrays nested too deeply", what())));
                }
                let elem_type = self.u32(what)?;
                let count = self.u64(what)?;
                // Each element takes at least this many bytes, so a count the file cannot hold is
                // rejected before anything is allocated.
                let min_size: u64 = match elem_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => {
                        return Err(
                            self.error(format!("{}: unknown array element type {t}", what()))
                        );
                    }
                };
                if count.saturating_mul(min_size) > self.remaining() as u64 {
                    return Err(self.error(format!(
                        "truncated or corrupt: {} claims {count} array elements at offset {}, more than the {} bytes left",
                        what(),
                        self.pos,
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_type, depth + 1, what)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(self.error(format!("{}: unknown value type {t}", what()))),
        })
    }
}

impl GgufFile {
    /// Opens and indexes a GGUF file; the tensor data stays on disk (memory-mapped) until read.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
        if len < 24 {
            return Err(ModelError::Format {
                file: path.to_path_buf(),
                message: format!("not a GGUF file: only {len} bytes, less than a GGUF header"),
            });
        }
        // SAFETY: the map is read-only. As with every mmap-based loader, a file truncated by another
        // process while we read it could fault; offsets are checked against the size mapped.
        let data = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let index = parse_index(&data, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            data,
            version: index.version,
            metadata: index.metadata,
            tensors: index.tensors,
            alignment: index.alignment,
            data_offset: index.data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub(crate) fn format_error(&self, message: String) -> ModelError {
        ModelError::Format {
            file: self.path.clone(),
            message,
        }
    }

    /// A string metadata value, or None when absent; an error when it has another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                self.format_error(format!(
                    "metadata `{key}` should be a string, found {}",
                    v.type_name()
                ))
            }),
        }
    }

    /// A non-negative integer metadata value (any integer type), or None when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.format_error(format!(
                    "metadata `{key}` should be a non-negative integer, found {} {v:?}",
                    v.type_name()
                ))
            }),
        }
    }

    /// A numeric metadata value, or None when absent.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                self.format_error(format!(
                    "metadata `{key}` should be a number, found {}",
                    v.type_name()
                ))
            }),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                self.format_error(format!(
                    "metadata `{key}` should be a bool, found {}",
                    v.type_name()
                ))
            }),
        }
    }

    /// An array of strings, or None when absent.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || self.format_error(format!("metadata `{key}` should be an array of strings"));
        let items = v.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|item| item.as_str().ok_or_else(bad))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of integers, or None when absent.
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || self.format_error(format!("metadata `{key}` should be an array of integers"));
        let items = v.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|item| item.as_i64().ok_or_else(bad))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub(crate) fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key)?
            .ok_or_else(|| self.format_error(format!("missing metadata `{key}`")))
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor whose type we can dequantise (bounds were checked when parsing).
    fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let (block, block_bytes) =
            info.ggml_type
                .block_layout()
                .ok_or_else(|| ModelError::UnsupportedQuantization {
                    file: self.path.clone(),
                    tensor: info.name.clone(),
                    ggml_type: info.ggml_type.name(),
                })?;
        let size = info.n_elements() / block * block_bytes;
        let start = self.data_offset + info.offset;
        // Re-checked here so this function stays safe on its own.
        let end = start
            .checked_add(size)
            .filter(|&end| end <= self.data.len() as u64)
            .ok_or_else(|| {
                self.format_error(format!("tensor `{}` data lies outside the file", info.name))
            })?;
        Ok(&self.data[start as usize..end as usize])
    }

    /// Dequantises one tensor to f32, row-major in the Hugging Face shape (`dims` reversed).
    pub fn dequantize(&self, info: &GgufTensorInfo) -> Result<HostTensor> {
        let bytes = self.tensor_bytes(info)?;
        let n = info.n_elements() as usize;
        let data = match info.ggml_type {
            GgmlType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            GgmlType::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            GgmlType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            GgmlType::Q8_0 => dequantize_q8_0(bytes, n),
            GgmlType::Q4_0 => dequantize_q4_0(bytes, n),
            GgmlType::Q4_1 => dequantize_q4_1(bytes, n),
            other => {
                return Err(ModelError::UnsupportedQuantization {
                    file: self.path.clone(),
                    tensor: info.name.clone(),
                    ggml_type: other.name(),
                });
            }
        };
        Ok(HostTensor::new(info.shape(), data))
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q8_0 block: f16 scale d, then 32 signed bytes; x = q * d.
fn dequantize_q8_0(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    for block in bytes.chunks_exact(34) {
        let d = f16_at(block, 0);
        out.extend(block[2..34].iter().map(|&q| f32::from(q as i8) * d));
    }
    out
}

/// Q4_0 block: f16 scale d, then 16 bytes; byte j holds element j (low nibble) and j + 16 (high);
/// x = (q - 8) * d.
fn dequantize_q4_0(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    for block in bytes.chunks_exact(18) {
        let d = f16_at(block, 0);
        let qs = &block[2..18];
        out.extend(qs.iter().map(|&b| (f32::from(b & 0x0f) - 8.0) * d));
        out.extend(qs.iter().map(|&b| (f32::from(b >> 4) - 8.0) * d));
    }
    out
}

/// Q4_1 block: f16 scale d, f16 minimum m, then 16 bytes of nibbles as in Q4_0; x = q * d + m.
fn dequantize_q4_1(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    for block in bytes.chunks_exact(20) {
        let d = f16_at(block, 0);
        let m = f16_at(block, 2);
        let qs = &block[4..20];
        out.extend(qs.iter().map(|&b| f32::from(b & 0x0f) * d + m));
        out.extend(qs.iter().map(|&b| f32::from(b >> 4) * d + m));
    }
    out
}

struct Index {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

fn parse_index(bytes: &[u8], path: &Path) -> Result<Index> {
    let mut r = Reader {
        bytes,
        pos: 0,
        path,
    };
    let magic = r.array::<4>(&|| "the magic number".into())?;
    if &magic != MAGIC {
        return Err(r.error(format!(
            "not a GGUF file: starts with {magic:02x?}, expected \"GGUF\""
        )));
    }
    let version = r.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err(r.error("GGUF version 1 is not supported (only 2 and 3)".into())),
        v if v.swap_bytes() <= 3 => {
            return Err(r.error("big-endian GGUF files are not supported".into()));
        }
        v => return Err(r.error(format!("unsupported GGUF version {v} (only 2 and 3)"))),
    }
    let tensor_count = r.u64(&|| "the tensor count".into())?;
    let kv_count = r.u64(&|| "the metadata count".into())?;

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = r.string(&|| format!("metadata key #{i}"))?;
        let what = || format!("metadata `{key}`");
        let value_type = r.u32(&what)?;
        let value = r.value(value_type, 0, &what)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.error(format!("metadata `{key}` appears twice")));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => {
                return Err(r.error(format!(
                    "metadata `general.alignment` must be a power of two, got {v:?}"
                )));
            }
        },
    };

    // A tensor info takes at least 8 + 4 + 4 + 8 bytes.
    if tensor_count.saturating_mul(24) > r.remaining() as u64 {
        return Err(r.error(format!(
            "truncated or corrupt: header claims {tensor_count} tensors, more than the file can hold"
        )));
    }
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let name = r.string(&|| format!("tensor info #{i}"))?;
        let what = || format!("tensor info `{name}`");
        let n_dims = r.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(r.error(format!(
                "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
            )));
        }
        let dims = (0..n_dims)
            .map(|_| r.u64(&what))
            .collect::<Result<Vec<_>>>()?;
        let ggml_type = GgmlType(r.u32(&what)?);
        let offset = r.u64(&what)?;
        tensors.push(GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;

    for t in &tensors {
        let err = |message: String| ModelError::Format {
            file: path.to_path_buf(),
            message: format!("tensor `{}`: {message}", t.name),
        };
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| err(format!("dimensions {:?} overflow", t.dims)))?;
        if t.offset % alignment != 0 {
            return Err(err(format!(
                "data offset {} is not a multiple of the alignment {alignment}",
                t.offset
            )));
        }
        // Types we cannot dequantise are reported when loaded, naming the tensor and type.
        let Some((block, block_bytes)) = t.ggml_type.block_layout() else {
            continue;
        };
        if t.dims[0] % block != 0 {
            return Err(err(format!(
                "{} rows of {} elements are not whole blocks of {block}",
                t.ggml_type.name(),
                t.dims[0]
            )));
        }
        let size = n / block * block_bytes;
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(size))
            .filter(|&end| end <= bytes.len() as u64);
        if end.is_none() {
            return Err(err(format!(
                "truncated or corrupt: its {size} bytes at data offset {} run past the end of the file ({} bytes)",
                t.offset,
                bytes.len()
            )));
        }
    }

    Ok(Index {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}
