//! Backend choice. CPU runs on burn-flex; with the `cuda` feature the CUDA backend is available
//! too, picked at run time by name so one binary serves both.

/// The default CPU backend.
pub type Cpu = burn::backend::Flex;
pub type CpuDevice = burn::backend::flex::FlexDevice;

#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// Backends a binary can be asked for, by name (`"cpu"`, `"cuda"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Cuda,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" | "flex" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!(
                "unknown backend {other:?} (expected \"cpu\" or \"cuda\")"
            )),
        }
    }
}

impl BackendKind {
    /// Whether this build can run the backend at all.
    pub fn compiled_in(self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }
}
