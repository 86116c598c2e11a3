//! Backend choice. CPU runs on burn-flex; with the `cuda` feature the CUDA backend is compiled in
//! too, and the role binaries pick one at run time (`model.backend` in cluster.toml), so one binary
//! serves both.

/// The default CPU backend.
pub type Cpu = burn::backend::Flex;
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// burn-cuda without fusion and autotune (see model/Cargo.toml for why).
#[cfg(feature = "cuda")]
pub type Cuda = burn_cuda::Cuda;
#[cfg(feature = "cuda")]
pub type CudaDevice = burn_cuda::CudaDevice;

/// Makes glibc's allocator keep freed memory for reuse. By default it maps every buffer above its
/// mmap threshold (at most 32 MiB) fresh from the kernel and unmaps it on free, so each step's
/// activations, logits and gradients come back as new pages the kernel zeroes one by one: about 8%
/// of a learner step in `perf` (`clear_page_erms`, page faults; tiny RL step's learner part 0.46
/// -> 0.42 s, BENCHMARKS.md, session 12). Here all threads share the main heap (one arena), nothing
/// is mapped separately, and up to 2 GiB of free memory stays with the process. A role binary calls
/// it first thing in `main`, before any other thread starts; elsewhere (other C libraries) it does
/// nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Generic code a binary runs on the backend it was asked for at run time.
pub trait BackendTask {
    type Output;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `task` on the backend chosen at run time (`cuda`: CUDA device 0, else burn-flex) and logs
/// the choice. CUDA needs a build with the `cuda` feature and a usable GPU; either missing is an
/// error that says so, never a panic or a silent CPU fallback.
pub fn run_on<T: BackendTask>(cuda: bool, task: T) -> Result<T::Output, String> {
    if !cuda {
        return Ok(run_on_cpu(task));
    }
    #[cfg(feature = "cuda")]
    {
        run_on_cuda(0, task)
    }
    #[cfg(not(feature = "cuda"))]
    {
        drop(task);
        Err(
            "model.backend = \"cuda\", but this binary was built without CUDA \
             (cargo build --features cuda)"
                .into(),
        )
    }
}

/// Runs `task` on burn-flex and logs the choice.
pub fn run_on_cpu<T: BackendTask>(task: T) -> T::Output {
    // burn-flex and its gemm run on rayon's global pool (RAYON_NUM_THREADS, else one per core).
    let threads = rayon::current_num_threads();
    tracing::info!(
        backend = "cpu",
        engine = "burn-flex",
        threads,
        "compute backend"
    );
    task.run::<Cpu>(CpuDevice::default())
}

/// Runs `task` on CUDA device `index` and logs the choice; an unusable device is an error.
#[cfg(feature = "cuda")]
pub fn run_on_cuda<T: BackendTask>(index: usize, task: T) -> Result<T::Output, String> {
    let device = cuda_device(index)?;
    tracing::info!(
        backend = "cuda",
        engine = "burn-cuda",
        ?device,
        "compute backend"
    );
    Ok(task.run::<Cuda>(device))
}

/// CUDA device `index`, checked by running one small kernel. burn-cuda panics when the driver or
/// NVRTC is missing; this turns that into an error that says so, before any real work starts.
#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> Result<CudaDevice, String> {
    use burn::tensor::Tensor;
    let device = CudaDevice::new(index);
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<Cuda, 1>::from_floats([1.0, 2.0, 3.0], &device);
        (t.clone() * t).sum().into_scalar()
    });
    match probe {
        Ok(v) if (v - 14.0).abs() < 1e-4 => Ok(device),
        Ok(v) => Err(format!(
            "CUDA device {index}: the probe kernel returned {v}, not 14"
        )),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!(
                "CUDA device {index} is not usable (driver, NVRTC or GPU missing?): {why}"
            ))
        }
    }
}
